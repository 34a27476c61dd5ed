"""The commonest chat pattern, with Litestar's SQLAlchemy plugin (Advanced Alchemy) on aiosqlite: stream the
answer, then save it with the injected session, the client having gone after the first word.

Litestar's SQLAlchemy plugin (``advanced_alchemy.extensions.litestar``, which ``litestar.plugins.sqlalchemy``
re-exports) keeps ``db_session`` in the request's scope and closes it (``autocommit``: commits or rolls it
back) when the response starts; a generation takes it along and ends it the same way when it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _support.asgi import serve, within
from _support.reading import ended, read_until
from advanced_alchemy.extensions.litestar import SQLAlchemyAsyncConfig, SQLAlchemyPlugin, base
from litestar import Litestar, post
from litestar.di import NamedDependency
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Mapped

from litestar_resumable import ResumablePlugin, StreamStore, resumable


class Answer(base.BigIntBase):
    __tablename__ = "resumable_test_answer"
    chat: Mapped[str]
    text: Mapped[str]


def chat_app(
    store: StreamStore, database: Path, proceed: asyncio.Event, before_send_handler: Any = None
) -> tuple[Litestar, SQLAlchemyAsyncConfig]:
    config = SQLAlchemyAsyncConfig(
        connection_string=f"sqlite+aiosqlite:///{database}",
        create_all=True,
        before_send_handler=before_send_handler,
    )

    @post("/chat/{chat_id:str}")
    @resumable(key="chat_id")
    async def chat(
        chat_id: str, db_session: NamedDependency[AsyncSession], commit: bool = True, fail: bool = False
    ) -> AsyncIterator[str]:
        answer = Answer(chat=chat_id, text="")
        db_session.add(answer)  # pending from the start: a session closed under it would drop it
        for word in ("hello", "world"):
            yield word
            answer.text = f"{answer.text} {word}".strip()
            await proceed.wait()
        if fail:
            raise RuntimeError("the model broke after the answer was added")
        if commit:
            await db_session.commit()

    app = Litestar([chat], plugins=[SQLAlchemyPlugin(config=config), ResumablePlugin(store)])
    return app, config


async def saved(database: Path) -> list[tuple[str, str]]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with AsyncSession(engine) as session:
            rows = await session.execute(select(Answer.chat, Answer.text))
            return [tuple(row) for row in rows]  # type: ignore[misc]
    finally:
        await engine.dispose()


async def assert_closed_and_dispose(config: SQLAlchemyAsyncConfig) -> None:
    engine = config.get_engine()
    assert engine.pool.checkedout() == 0  # the session was closed and gave its connection back
    # Advanced Alchemy disposes the engine of only the first config made in a process (its lifespan looks
    # for the engine under "db_engine", later configs keep theirs under "db_engine_1", ...): do it here.
    await engine.dispose()


async def answer_with_the_client_gone_after_the_first_word(
    app: Litestar, proceed: asyncio.Event, path: str
) -> str:
    async with serve(app) as client:
        async with client.stream("POST", path) as response:
            stream_id = response.headers["x-resumable-stream-id"]
            first = await within(read_until(response, lambda events: len(events) >= 1))
            assert [e.data for e in first] == ["hello"]
        proceed.set()
        async with client.stream("GET", f"/resumable/streams/{stream_id}") as replay:
            events = await within(read_until(replay, ended))
    assert [e.data for e in events[:-1]] == ["hello", "world"]
    return events[-1].status


@pytest.mark.parametrize("before_send_handler", [None, "autocommit"])
async def test_the_generator_saves_the_answer_with_the_injected_session(
    store: StreamStore, tmp_path: Path, before_send_handler: str | None
) -> None:
    proceed = asyncio.Event()
    database = tmp_path / "chat.db"
    app, config = chat_app(store, database, proceed, before_send_handler)
    # With autocommit the handler does not commit: the end of the generation does, as a response's would.
    path = "/chat/c1" if before_send_handler is None else "/chat/c1?commit=false"
    status = await answer_with_the_client_gone_after_the_first_word(app, proceed, path)
    assert status == "done"
    assert await saved(database) == [("c1", "hello world")]
    await assert_closed_and_dispose(config)


async def test_with_autocommit_a_failed_generation_rolls_back(store: StreamStore, tmp_path: Path) -> None:
    proceed = asyncio.Event()
    database = tmp_path / "chat.db"
    app, config = chat_app(store, database, proceed, "autocommit")
    status = await answer_with_the_client_gone_after_the_first_word(
        app, proceed, "/chat/c2?commit=false&fail=true"
    )
    assert status == "error"
    assert await saved(database) == []
    await assert_closed_and_dispose(config)
