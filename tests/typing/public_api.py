"""Checked by mypy --strict in CI (not run): the public API's types as users meet them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, assert_type

from litestar import Litestar, Response, get, post

from litestar_resumable import (
    MemoryStreamStore,
    RedisStreamStore,
    ResumablePlugin,
    StreamInfo,
    StreamOptions,
    resumable,
)
from litestar_resumable.client import ReceivedEvent, stream_events
from litestar_resumable.testing import read_sse


async def bare(n: int = 10) -> AsyncIterator[str]:
    for i in range(n):
        yield str(i)


async def keyed(chat_id: str, data: dict[str, str]) -> AsyncIterator[dict[str, str]]:
    yield {"chat": chat_id, **data}


decorated_bare = resumable(bare)
decorated_keyed = resumable(key="chat_id", ttl=600, heartbeat=5.0, retry=2000, on_conflict="reject")(keyed)
assert_type(decorated_bare(n=3), Awaitable[Response[Any]])
assert_type(decorated_keyed("c", {"prompt": "hi"}), Awaitable[Response[Any]])

count_route = get("/count")(decorated_bare)
chat_route = post("/chat/{chat_id:str}")(decorated_keyed)
plugin = ResumablePlugin(store=RedisStreamStore.from_url("redis://localhost:6379/0"), ttl=60, lease=5)
app = Litestar([count_route, chat_route], plugins=[plugin, ResumablePlugin(MemoryStreamStore())])


async def use_plugin() -> None:
    stream_id: str | None = await plugin.active_stream_id("chat-1")
    info: StreamInfo | None = await plugin.cancel(stream_id or "")
    response: Response[Any] = await plugin.stream_response("x", last_event_id=None)
    del info, response


async def use_client(client: Any) -> None:
    async for event in stream_events(client, "GET", "/count"):
        assert_type(event, ReceivedEvent)


# Options are typed keyword arguments (Unpack[RouteOptions]): a misspelt one is an error, None is "off".
misspelt = resumable(tll=600)  # type: ignore[call-overload]
switched_off = resumable(owner=None, max_duration=None)(bare)
wrong_type = resumable(ttl="long")  # type: ignore[call-overload]
defaults: StreamOptions = plugin.options_for("tests.route")
assert_type(defaults.max_duration, float | None)


async def use_test_kit(client: Any) -> None:
    first = await read_sse(client, "GET", "/count", max_events=2)
    rest = await read_sse(client, "GET", "/count", last_event_id=first.last_event_id)
    assert_type(rest.events[0].position, int)
