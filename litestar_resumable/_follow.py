"""Followers: the SSE response of a stream, from any position, on any worker.

A follower reads stored events after its cursor in batches (at most ``max_read_bytes`` at a time, so its
memory is bounded in bytes) until it has caught up, then sleeps on the store's watch until the stream
grows. Replay and live reading are one loop over one cursor, so there is no
hand-over between them where an event could be skipped or sent twice (the ``XREAD $`` race).

A store out of reach is retried for ``store_retry_for`` seconds (a Redis failover takes a few), then the
follower ends with a terminal event of its own (``interrupted``, with no ``id:``: it is not stored). So
does a follower that finds the stream ended before the position it has read to: the store lost events
it had served (asynchronous replication and a failover can do that; see docs/scaling.md).

While idle it sends a ``: ping`` comment every ``heartbeat`` seconds, and every half lease it asks the
store to end the stream as ``interrupted`` if the producer's lease has run out (through the watch, so a
process asks once for all its readers of a stream). The store does that atomically, so of many
followers on many workers exactly one writes the terminal event and all of them read it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from typing import TYPE_CHECKING

from litestar.response import ServerSentEvent, ServerSentEventMessage

from litestar_resumable._errors import StoreUnavailableError
from litestar_resumable._waiting import retrying

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from litestar_resumable._format import StreamFormat
    from litestar_resumable._options import StreamOptions
    from litestar_resumable._store.base import StreamStore

__all__ = ("HEARTBEAT", "READ_BATCH", "EncodedEvents", "follow", "sse_response")

logger = logging.getLogger("litestar_resumable")
READ_BATCH = 1000
HEARTBEAT = b": ping\n\n"


class EncodedEvents(ServerSentEventMessage):
    """SSE text we encoded ourselves, passed through Litestar's SSE response as it is."""

    def __init__(self, payload: bytes) -> None:
        super().__init__()
        self.payload = payload

    def encode(self) -> bytes:
        return self.payload


async def follow(
    store: StreamStore, stream_id: str, after: int, options: StreamOptions, stream_format: StreamFormat
) -> AsyncIterator[bytes]:
    """Yield the stream's SSE text after position ``after``, then live, up to and with the terminal event."""
    try:
        async for chunk in _follow(store, stream_id, after, options, stream_format):
            yield chunk
    except StoreUnavailableError:
        logger.warning("stream %s: the store is out of reach; ending this follower", stream_id)
        yield stream_format.render_lost("the stream store is unavailable")


async def _follow(
    store: StreamStore, stream_id: str, after: int, options: StreamOptions, stream_format: StreamFormat
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    lease_check = options.lease / 2
    yield f"retry: {options.retry}\n\n".encode()
    async with store.watch(stream_id) as watch:
        cursor = after
        next_heartbeat = loop.time() + options.heartbeat
        next_lease_check = loop.time()  # a resumer of a dead stream learns it at once
        while True:
            read = functools.partial(
                store.read_after, stream_id, cursor, limit=READ_BATCH, max_bytes=options.max_read_bytes
            )
            events = await retrying(read, options.store_retry_for, f"reading stream {stream_id}")
            if events:
                yield stream_format.render(stream_id, events)
                if events[-1].is_terminal:
                    return
                cursor = events[-1].position
                now = loop.time()
                next_heartbeat = now + options.heartbeat
                next_lease_check = now + lease_check
                continue
            now = loop.time()
            if now >= next_lease_check:
                check = functools.partial(watch.interrupt_if_abandoned, lease_check)
                info = await retrying(check, options.store_retry_for, f"checking stream {stream_id}")
                if info is None:  # gone from the store (expired, or a store restarted empty)
                    yield stream_format.render_lost("the stream is gone from the store")
                    return
                if not info.is_running and info.last_position <= cursor:
                    # It ended before what this reader has seen: the store lost events (a failover).
                    yield stream_format.render_lost("the stream store lost events this reader had")
                    return
                next_lease_check = now + lease_check
                if info.last_position > cursor:
                    continue
            if now >= next_heartbeat:
                yield HEARTBEAT
                next_heartbeat = now + options.heartbeat
            await watch.wait(cursor, max(0.0, min(next_heartbeat, next_lease_check) - loop.time()))


def sse_response(
    store: StreamStore,
    stream_id: str,
    after: int,
    options: StreamOptions,
    stream_format: StreamFormat,
    *,
    on_close: Callable[[], None] | None = None,
) -> ServerSentEvent:
    """The SSE response of a follower. ``on_close`` runs once when it is done: read to its end, stopped,
    or never started (a client gone before the response began), so counts of open followers stay true."""

    async def body() -> AsyncIterator[ServerSentEventMessage]:
        try:
            async for chunk in follow(store, stream_id, after, options, stream_format):
                yield EncodedEvents(chunk)
        finally:
            closed()

    events = body()
    closed = weakref.finalize(events, on_close or _nothing)
    return ServerSentEvent(
        events,
        status_code=200,  # not the route's default: a POST route would answer 201
        headers={
            "Cache-Control": "no-cache, no-transform",
            "X-Resumable-Stream-Id": stream_id,
            **stream_format.headers,
        },
    )


def _nothing() -> None:
    pass
