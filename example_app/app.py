"""The example app: a chat page whose answer survives reloads, drops and shared links.

Run it with ``python -m example_app`` (or ``uvicorn example_app.app:app``). It uses the in-memory store
and the built-in fake model; set ``REDIS_URL`` to share streams between processes through Redis.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

from litestar import Litestar, MediaType, get

from example_app.fake_model import fake_answer
from litestar_resumable import MemoryStreamStore, RedisStreamStore, ResumablePlugin, StreamStore, resumable

_PAGE = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")


def make_store() -> StreamStore:
    url = os.environ.get("REDIS_URL")
    return RedisStreamStore.from_url(url, key_prefix="example") if url else MemoryStreamStore()


resumable_plugin = ResumablePlugin(make_store())


@get("/", media_type=MediaType.HTML, sync_to_thread=False)
def page() -> str:
    return _PAGE


@get("/api/generate")
@resumable(key="chat_id")
async def generate(prompt: str, chat_id: str) -> AsyncIterator[dict[str, str]]:  # noqa: ARG001 - the key
    """Stream the answer to ``prompt`` as ``{"text": delta}`` events; one running answer per chat."""
    async for delta in fake_answer(prompt):
        yield {"text": delta}


@get("/api/chats/{chat_id:str}/active")
async def active(chat_id: str) -> dict[str, str | None]:
    """The running answer of a chat, so a reloaded page can find it."""
    return {"stream_id": await resumable_plugin.active_stream_id(chat_id)}


app = Litestar([page, generate, active], plugins=[resumable_plugin])
