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
import time
import weakref
from typing import TYPE_CHECKING

from litestar.response import Stream

from litestar_resumable._errors import StoreUnavailableError
from litestar_resumable._observe import NO_OBSERVER, Observer, timed
from litestar_resumable._waiting import retrying

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping

    from litestar_resumable._events import StreamEvent
    from litestar_resumable._format import StreamFormat
    from litestar_resumable._options import StreamOptions
    from litestar_resumable._store.base import StreamStore, StreamWatch

__all__ = ("HEARTBEAT", "READ_BATCH", "event_stream", "follow", "sse_response")

logger = logging.getLogger("litestar_resumable")
READ_BATCH = 1000
HEARTBEAT = b": ping\n\n"


def event_stream(body: AsyncIterator[bytes], headers: Mapping[str, str] | None = None) -> Stream:
    """A response of SSE text we encode ourselves, sent as it comes.

    Litestar's ``Stream``, not its ``ServerSentEvent``: that one wraps every chunk in a message object and
    starts every response with a hop to a worker thread, for encoding we have done already.
    """
    return Stream(
        body,
        media_type="text/event-stream",
        status_code=200,  # not the route's default: a POST route would answer 201
        headers={
            "Cache-Control": "no-cache, no-transform",
            "Connection": "keep-alive",
            "X-Accel-Buffering": "no",
            **(headers or {}),
        },
    )


async def follow(  # noqa: C901 - one loop over one cursor, on purpose (see the module's documentation)
    store: StreamStore,
    stream_id: str,
    after: int,
    options: StreamOptions,
    stream_format: StreamFormat,
    *,
    observer: Observer = NO_OBSERVER,
    route: str = "",
    requested_at: float | None = None,
    on_close: Callable[[], None] | None = None,
) -> AsyncIterator[bytes]:
    """Yield the stream's SSE text after position ``after``, then live, up to and with the terminal event.

    One generator, so a chunk on its way to the client passes through no other; ``on_close`` runs when it
    ends, however it ends. A batch is rendered once per process for all the stream's readers here. The
    time from ``requested_at`` (``time.perf_counter()``) to the first events sent goes to the metrics.
    """
    loop = asyncio.get_running_loop()
    lease_check = options.lease / 2
    try:
        yield f"retry: {options.retry}\n\n".encode()
        async with store.watch(stream_id) as watch:
            cursor = after
            next_heartbeat = loop.time() + options.heartbeat
            next_lease_check = loop.time()  # a resumer of a dead stream learns it at once
            while True:
                events = await _read(store, stream_id, cursor, options, observer)
                if events:
                    yield _rendered(stream_format, stream_id, events)
                    if requested_at is not None:  # sent: the first events are on the wire
                        observer.first_event(route, time.perf_counter() - requested_at)
                        requested_at = None
                    if events[-1].is_terminal:
                        return
                    cursor = events[-1].position
                    now = loop.time()
                    next_heartbeat = now + options.heartbeat
                    next_lease_check = now + lease_check
                    continue
                now = loop.time()
                if now >= next_lease_check:
                    lost, grown = await _check(watch, lease_check, cursor, options)
                    if lost is not None:
                        yield stream_format.render_lost(lost)
                        return
                    next_lease_check = now + lease_check
                    if grown:
                        continue
                if now >= next_heartbeat:
                    yield HEARTBEAT
                    next_heartbeat = now + options.heartbeat
                await watch.wait(cursor, max(0.0, min(next_heartbeat, next_lease_check) - loop.time()))
    except StoreUnavailableError:
        logger.warning("stream %s: the store is out of reach; ending this follower", stream_id)
        yield stream_format.render_lost("the stream store is unavailable")
    finally:
        if on_close is not None:
            on_close()


_RENDERED: dict[tuple[str, str, int, int], tuple[StreamEvent, StreamEvent, bytes]] = {}
_RENDERED_MOST = 512  # renders kept: the newest batch of each of a process's busiest streams
_RENDERED_LARGEST = 64 * 1024  # bytes: a larger render is rarely shared, and not worth keeping


def _rendered(stream_format: StreamFormat, stream_id: str, events: list[StreamEvent]) -> bytes:
    """The wire bytes of a batch of events, rendered once per process: the viewers of one stream read the
    same batches, and the first renders for all of them."""
    first, last = events[0], events[-1]
    key = (stream_format.name, stream_id, first.position, last.position)
    cached = _RENDERED.get(key)
    # The very same event objects (a shared window's), not only the same positions: a store that lost and
    # rewrote positions (a failover) must not be served from before.
    if cached is not None and cached[0] is first and cached[1] is last:
        return cached[2]
    rendered = stream_format.render(stream_id, events)
    if len(rendered) <= _RENDERED_LARGEST:
        if len(_RENDERED) >= _RENDERED_MOST:
            del _RENDERED[next(iter(_RENDERED))]  # the oldest
        _RENDERED[key] = (first, last, rendered)
    return rendered


async def _read(
    store: StreamStore, stream_id: str, cursor: int, options: StreamOptions, observer: Observer
) -> list[StreamEvent]:
    """Events after ``cursor``; a store out of reach is retried for ``store_retry_for`` seconds. With
    metrics on, each call is timed (inline on the first try: a read per batch per follower is hot)."""
    read = functools.partial(
        store.read_after, stream_id, cursor, limit=READ_BATCH, max_bytes=options.max_read_bytes
    )
    timing = observer.timing
    started = time.perf_counter() if timing else 0.0
    try:
        events = await read()
    except StoreUnavailableError as exc:
        if timing:
            observer.store_failed("read", started, exc)
        again = (lambda: timed(observer, "read", read())) if timing else read
        retried: list[StreamEvent] = await retrying(
            again, options.store_retry_for, f"reading stream {stream_id}"
        )
        return retried
    except BaseException as exc:
        if timing:
            observer.store_failed("read", started, exc)
        raise
    if timing:
        observer.store_call("read", started)
    return events


async def _check(
    watch: StreamWatch, lease_check: float, cursor: int, options: StreamOptions
) -> tuple[str | None, bool]:
    """End the stream as interrupted if its producer is gone. Say why a reader at ``cursor`` can read no
    more (None: it can), and whether the stream has more after ``cursor``."""
    check = functools.partial(watch.interrupt_if_abandoned, lease_check)
    info = await retrying(check, options.store_retry_for, f"checking stream {watch.stream_id}")
    if info is None:  # gone from the store (expired, or a store restarted empty)
        return "the stream is gone from the store", False
    if not info.is_running and info.last_position <= cursor:
        # It ended before what this reader has seen: the store lost events (a failover).
        return "the stream store lost events this reader had", False
    return None, info.last_position > cursor


def sse_response(
    store: StreamStore,
    stream_id: str,
    after: int,
    options: StreamOptions,
    stream_format: StreamFormat,
    *,
    observer: Observer = NO_OBSERVER,
    route: str = "",
    requested_at: float | None = None,
    on_close: Callable[[], None] | None = None,
) -> Stream:
    """The SSE response of a follower. ``on_close`` runs once when it is done: read to its end, stopped,
    or never started (a client gone before the response began), so counts of open followers stay true."""
    closed = observer.follower(route)

    def close() -> None:
        closed()
        if on_close is not None:
            on_close()

    once = _Once(close)
    events = follow(
        store,
        stream_id,
        after,
        options,
        stream_format,
        observer=observer,
        route=route,
        requested_at=requested_at,
        on_close=once,
    )
    weakref.finalize(events, once)
    return event_stream(events, {"X-Resumable-Stream-Id": stream_id, **stream_format.headers})


class _Once:
    """Calls ``function`` the first time it is called, and never again."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[[], None]) -> None:
        self._function: Callable[[], None] | None = function

    def __call__(self) -> None:
        function, self._function = self._function, None
        if function is not None:
            function()
