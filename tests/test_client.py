"""The Python client's reading of what servers send, including the unusual endings."""

from __future__ import annotations

from collections.abc import AsyncIterator

from _support.asgi import serve
from litestar import Litestar, get
from litestar.response import Stream

from litestar_resumable.client import stream_events

STREAM = "AAAAAAAAAAAAAAAAAAAAAA"


@get("/lost")
async def lost() -> Stream:
    """What a follower sends when its store goes out of reach: a last terminal event without an id."""

    async def body() -> AsyncIterator[str]:
        yield "retry: 1000\n\n"
        yield f"id: {STREAM}.1\ndata: a\n\n"
        yield ": ping\n\n"
        yield 'event: end\ndata: {"status":"interrupted","message":"the stream store is unavailable"}\n\n'

    return Stream(body(), media_type="text/event-stream", headers={"X-Resumable-Stream-Id": STREAM})


async def test_a_terminal_event_without_an_id_ends_the_iteration() -> None:
    async with serve(Litestar([lost])) as http:
        events = [e async for e in stream_events(http, "GET", "/lost", max_reconnects=0)]
    assert [(e.id, e.event, e.data) for e in events[:1]] == [(f"{STREAM}.1", "message", "a")]
    assert events[1].is_terminal
    assert events[1].id == ""
    assert events[1].json() == {"status": "interrupted", "message": "the stream store is unavailable"}
    assert len(events) == 2  # the heartbeat and the retry field are no events
