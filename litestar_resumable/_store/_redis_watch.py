"""The Redis store's shared reads: one window of recent events per watched stream, one Pub/Sub reader.

The first watcher of a stream in a process subscribes the process to the stream's channel (one Pub/Sub
connection for all streams), and one read per notification feeds a window of recent events that every
local reader (followers, the producer's guard) reads from. Readers that fall behind the window read the
stream directly, so a slow reader costs itself a read and nobody else anything. The window is bounded in
bytes (``window_bytes`` per stream), so a stream of large events keeps few of them or none.

Subscriptions go through a :class:`Subscriber` (``_redis_pubsub``: classic Pub/Sub on a standalone Redis,
sharded on a cluster). A lost notification is made good by the readers' own timed re-checks (once a
second at most per stream), and a lost subscription by re-reading its stream at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import RedisError

from litestar_resumable._errors import StoreUnavailableError
from litestar_resumable._store.base import StreamWatch
from litestar_resumable._waiting import Signal, wait_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine, Sequence

    from litestar_resumable._events import StreamEvent
    from litestar_resumable._store._redis_pubsub import Subscriber
    from litestar_resumable._store.base import StreamStore

__all__ = ("Watched", "Watches")

logger = logging.getLogger("litestar_resumable")

_SUBSCRIBE_TIMEOUT = 5.0
_REFRESH_INTERVAL = 1.0


class _Source(Protocol):
    """What the watches need of the store: its reads and channel names."""

    def channel(self, stream_id: str, *, ends_only: bool = False) -> str: ...
    async def last_position(self, stream_id: str) -> int: ...
    async def read(
        self, stream_id: str, position: int, limit: int, max_bytes: int
    ) -> tuple[list[StreamEvent], int]: ...


class Watched(StreamWatch):
    """This process's view of one stream that local readers watch: the newest events and a wake-up."""

    def __init__(self, watches: Watches, store: StreamStore, stream_id: str) -> None:
        super().__init__(store, stream_id)
        self._watches = watches
        self.refs = 0
        self.ends_only = False
        """Subscribed to the stream's end only: this process writes it, and its writes' replies feed the
        window (no notification of them needed)."""
        self.hi = 0
        self.events: deque[StreamEvent] = deque()
        self.nbytes = 0
        self.ready = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.changed = Signal()
        self.refreshing = False
        self.dirty = False
        self.refreshed_at = -math.inf
        self.appending = 0
        """The last position of this process's own write in flight: its reply brings the events, so the
        notification of them, which can arrive first, needs no read."""

    def extend(self, events: Sequence[StreamEvent]) -> None:
        # Before the watch is ready ``hi`` is not yet known; it will be read after these events anyway.
        if not self.ready.is_set() or not events or events[0].position != self.hi + 1:
            return
        limit = self._watches.window_bytes
        for event in events:
            self.events.append(event)
            self.nbytes += event.nbytes
        while self.events and self.nbytes > limit:
            self.nbytes -= self.events.popleft().nbytes
        self.hi = events[-1].position
        if events[-1].is_terminal:
            self.ended.set()
        self.changed.fire()

    def slice_after(self, position: int, limit: int) -> list[StreamEvent] | None:
        """Events after ``position`` from the window, or None if the window does not reach back that far."""
        if not self.ready.is_set():
            return None
        low = self.hi - len(self.events)  # the window holds positions low + 1 .. hi
        if not low <= position <= self.hi:
            return None
        start = position - low
        return list(islice(self.events, start, start + limit))

    async def wait(self, position: int, timeout: float) -> bool:
        if self.hi > position:
            return True
        if await self.changed.wait(timeout):
            return True
        # A notification may have been lost: look at the stream itself, once a second at most for all
        # of this process's readers.
        now = asyncio.get_running_loop().time()
        if now - self.refreshed_at >= _REFRESH_INTERVAL:
            self.refreshed_at = now
            await self._watches.refresh(self)
        return self.hi > position


class Watches:
    """The watched streams of one Redis store in this process, and the Pub/Sub reader that feeds them."""

    def __init__(self, store: StreamStore, source: _Source, window_bytes: int) -> None:
        self.window_bytes = window_bytes
        self.subscriber: Subscriber | None = None
        """Set by the store: who subscribes this process to channels (classic or sharded Pub/Sub)."""
        self._store = store
        self._source = source
        self._watched: dict[str, Watched] = {}
        self._channels: dict[str, Watched] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, stream_id: str) -> Watched | None:
        return self._watched.get(stream_id)

    @contextlib.asynccontextmanager
    async def watch(self, stream_id: str, *, writing: bool = False) -> AsyncIterator[Watched]:
        watched = self._watched.get(stream_id)
        if watched is None:
            watched = Watched(self, self._store, stream_id)
            # A stream this process writes: its writes' replies feed the window, so only its end (written
            # by a cancel elsewhere, say) needs to be heard of. Readers that join share that. The writer's
            # watch comes first (it opens as the stream starts); one that joins a reader's keeps the
            # reader's subscription to every write, which is right, only busier. A writer leaves when the
            # stream has ended (or its process is going); readers left behind re-read the stream once a
            # second when nothing wakes them.
            watched.ends_only = writing
            self._watched[stream_id] = watched
            self.spawn(self._start(watched))
        watched.refs += 1
        try:
            await wait_event(watched.ready, _SUBSCRIBE_TIMEOUT)
            yield watched
        finally:
            watched.refs -= 1
            if watched.refs == 0 and self._watched.get(stream_id) is watched:
                del self._watched[stream_id]
                self.spawn(self._stop(watched))

    async def _start(self, watched: Watched) -> None:
        channel = self._source.channel(watched.stream_id, ends_only=watched.ends_only)
        try:
            self._channels[channel] = watched
            assert self.subscriber is not None, "the store sets the subscriber"  # noqa: S101
            await self.subscriber.subscribe(channel)
            # Read the last position only once subscribed, so no write falls between the two.
            await wait_event(watched.subscribed, _SUBSCRIBE_TIMEOUT)
            watched.hi = await self._source.last_position(watched.stream_id)
            watched.events.clear()
            watched.nbytes = 0
            watched.changed.fire()  # readers that waited meanwhile look again
        except (RedisError, OSError, StoreUnavailableError):
            logger.warning("could not subscribe to %s; readers fall back to polling", channel, exc_info=True)
        finally:
            watched.ready.set()

    async def _stop(self, watched: Watched) -> None:
        channel = self._source.channel(watched.stream_id, ends_only=watched.ends_only)
        if self._channels.get(channel) is watched:
            del self._channels[channel]
        if self.subscriber is not None and channel not in self._channels:
            with contextlib.suppress(RedisError, OSError):
                await self.subscriber.unsubscribe(channel)

    def hear(self, kind: str, channel: str, data: Any) -> None:
        """What the subscriber heard: a subscription confirmed, a new last position, or a lost channel."""
        watched = self._channels.get(channel)
        if watched is None:
            return
        if kind == "subscribed":
            watched.subscribed.set()
        elif kind == "lost":
            self.catch_up(watched)
        elif watched.ready.is_set() and int(data) > max(watched.hi, watched.appending):
            self.spawn(self.refresh(watched))

    async def refresh(self, watched: Watched) -> None:
        """Read what is new after the window into it; concurrent calls fold into one running loop."""
        if watched.refreshing:
            watched.dirty = True
            return
        watched.refreshing = True
        try:
            while True:
                watched.dirty = False
                events, last = await self._source.read(watched.stream_id, watched.hi, 1000, self.window_bytes)
                watched.extend(events)
                # Reads stop at the window's size in bytes: go on until the window reaches the stream's end.
                if not events or (watched.hi >= last and not watched.dirty):
                    return
        except (RedisError, OSError, StoreUnavailableError):
            logger.warning("could not read stream %s", watched.stream_id, exc_info=True)
        finally:
            watched.refreshing = False

    def catch_up(self, watched: Watched) -> None:
        """Read what this process may have missed (a notification skipped for a write of its own)."""
        if watched.ready.is_set():
            self.spawn(self.refresh(watched))

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self.subscriber is not None:
            await self.subscriber.close()
        self._watched.clear()
        self._channels.clear()
