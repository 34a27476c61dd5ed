"""The production store: one Redis Stream per generation, shared by every worker and host.

Key layout (``P`` is ``key_prefix``; ``{id}`` is a Redis Cluster hash tag, so a stream's keys share a slot):

- ``P:{id}:events``: a Redis Stream; the entry id of the event at position ``n`` is ``0-n``, so
  ``XRANGE (0-n +`` is "everything after position n" with no lookup table;
- ``P:{id}:meta``: a hash with ``status``, ``last`` (newest position), ``lease`` (Redis server time in ms
  until which the producer is presumed alive), ``ttl`` (ms to keep the stream after it ends), ``route``,
  ``key`` and ``owner``;
- ``P:{id}:notify``: a Pub/Sub channel; every write publishes the new last position;
- ``P:key:<key>``: the id of the active stream for an app-defined key.

Writes are Lua scripts shipped beside this module, so append + position + lease + expiry is one atomic
round trip per batch. Lease times come from Redis's own clock, so hosts need no clock agreement.

Reads are shared per process: the first watcher of a stream subscribes this process to its channel (one
Pub/Sub connection for all streams), and one ``XRANGE`` per notification feeds a window of recent
events that every local follower reads from. Followers that fall behind the window read the stream
directly, so a slow reader costs itself a read and nobody else anything. The Pub/Sub connection reads
with a timeout below redis-py's default 5 s socket timeout, and a lost notification is made good by
the readers' own timed re-checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
from collections import deque
from collections.abc import Callable, Coroutine
from importlib.resources import files
from itertools import islice
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from litestar_resumable._events import StreamEvent, StreamInfo, StreamStatus, TerminalStatus
from litestar_resumable._store.base import StoreUnavailableError, StreamStore, StreamWatch
from litestar_resumable._waiting import wait_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from redis.asyncio.client import PubSub

__all__ = ("RedisStreamStore",)

logger = logging.getLogger("litestar_resumable")
P = ParamSpec("P")
T = TypeVar("T")

_PUBSUB_READ_TIMEOUT = 1.0  # below redis-py's default socket_timeout of 5 s
_SUBSCRIBE_TIMEOUT = 5.0
_REFRESH_INTERVAL = 1.0
_INFO_FIELDS = ["status", "last", "route", "key", "owner"]


def _script(name: str) -> str:
    return files("litestar_resumable._store").joinpath(name).read_text(encoding="utf-8")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _unavailable_on_error(
    method: Callable[Concatenate[RedisStreamStore, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[RedisStreamStore, P], Coroutine[Any, Any, T]]:
    """Report Redis out of reach as :class:`StoreUnavailableError`, which the plugin answers with 503."""

    @functools.wraps(method)
    async def call(self: RedisStreamStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(self, *args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailableError(f"Redis is out of reach: {exc}") from exc

    return call


class _Watched(StreamWatch):
    """This process's view of one stream that local readers watch: the newest events and a wake-up."""

    def __init__(self, store: RedisStreamStore, stream_id: str, window: int) -> None:
        super().__init__(store, stream_id)
        self._redis_store = store
        self.refs = 0
        self.hi = 0
        self.events: deque[StreamEvent] = deque(maxlen=window)
        self.ready = asyncio.Event()
        self.subscribed = asyncio.Event()
        self.changed = asyncio.Event()
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
        self.events.extend(events)
        self.hi = events[-1].position
        if events[-1].is_terminal:
            self.ended.set()
        self.changed.set()
        self.changed = asyncio.Event()

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
        if await wait_event(self.changed, timeout):
            return True
        # A notification may have been lost: look at the stream itself, once a second at most for all
        # of this process's readers.
        now = asyncio.get_running_loop().time()
        if now - self.refreshed_at >= _REFRESH_INTERVAL:
            self.refreshed_at = now
            await self._redis_store._refresh(self)  # noqa: SLF001 - part of the store
        return self.hi > position


class RedisStreamStore(StreamStore):
    """Keep streams in Redis (Redis Streams + Lua), shared by every worker and host that uses it."""

    def __init__(self, redis: Redis, *, key_prefix: str = "resumable", window: int = 1024) -> None:
        self.redis = redis
        self.key_prefix = key_prefix
        self.window = window
        self._owns_client = False
        self._create = redis.register_script(_script("_redis_create.lua"))
        self._append = redis.register_script(_script("_redis_append.lua"))
        self._finish = redis.register_script(_script("_redis_finish.lua"))
        self._set_key = redis.register_script(_script("_redis_set_key.lua"))
        self._watched: dict[str, _Watched] = {}
        self._channels: dict[str, _Watched] = {}
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key_prefix: str = "resumable",
        window: int = 1024,
        max_connections: int = 32,
        pool_timeout: float = 10.0,
        **redis_kwargs: Any,
    ) -> RedisStreamStore:
        """Connect to the Redis at ``url``; the store owns the client and closes it on shutdown.

        Commands share at most ``max_connections`` connections (one of them is the Pub/Sub connection) and
        wait up to ``pool_timeout`` seconds for a free one. redis-py's default pool instead fails a command
        at once ("Too many connections") past its cap (100 in redis-py 8.1): hundreds of streams
        in one process then turn a short burst into failed writes, retries and stalls.
        """
        pool = BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout, **redis_kwargs
        )
        store = cls(Redis.from_pool(pool), key_prefix=key_prefix, window=window)
        store._owns_client = True
        return store

    def _keys(self, stream_id: str) -> tuple[str, str, str]:
        base = f"{self.key_prefix}:{{{stream_id}}}"
        return f"{base}:events", f"{base}:meta", f"{base}:notify"

    def _key_entry(self, key: str) -> str:
        return f"{self.key_prefix}:key:{key}"

    @staticmethod
    def _info(stream_id: str, fields: list[Any]) -> StreamInfo | None:
        status, last, route, key, owner = fields
        if status is None:
            return None
        status_text: StreamStatus = _text(status)  # type: ignore[assignment] # only scripts write it
        key_text = _text(key) if key is not None else ""
        owner_text = _text(owner) if owner is not None else ""
        return StreamInfo(
            stream_id,
            status_text,
            int(last),
            _text(route),
            key_text or None,
            owner_text[1:] if owner_text else None,
        )

    @_unavailable_on_error
    async def create(
        self,
        stream_id: str,
        *,
        route: str,
        key: str | None,
        lease: float,
        ttl: float,
        owner: str | None = None,
    ) -> None:
        _, meta, _ = self._keys(stream_id)
        # An owner is stored with a leading '=' so that an empty owner id stays distinct from none.
        owner_field = "" if owner is None else f"={owner}"
        created = await self._create(keys=[meta], args=[_ms(lease), _ms(ttl), route, key or "", owner_field])
        if not int(created):
            raise ValueError(f"stream {stream_id} exists already")

    @_unavailable_on_error
    async def append(self, stream_id: str, events: Sequence[StreamEvent], *, lease: float) -> bool:
        events_key, meta, channel = self._keys(stream_id)
        args: list[Any] = [_ms(lease), channel, events[0].position if events else 0]
        for event in events:
            args.append(event.event or "")
            args.append(event.data)
        watched = self._watched.get(stream_id)
        last = events[-1].position if events else 0
        if watched is not None:
            watched.appending = max(watched.appending, last)
        try:
            status = _text(await self._append(keys=[events_key, meta], args=args))
        except BaseException:
            if watched is not None:
                self._catch_up(watched)  # a notification skipped for this write is read now
            raise
        if status != "running":
            if watched is not None:
                self._catch_up(watched)
            return False
        if watched is not None:
            watched.extend(events)
            if watched.hi < last:
                self._catch_up(watched)
        return True

    def _catch_up(self, watched: _Watched) -> None:
        if watched.ready.is_set():
            self._spawn(self._refresh(watched))

    @_unavailable_on_error
    async def finish(
        self,
        stream_id: str,
        status: TerminalStatus,
        data: str,
        *,
        only_if_lease_expired: bool = False,
    ) -> StreamInfo | None:
        events_key, meta, channel = self._keys(stream_id)
        fields = await self._finish(
            keys=[events_key, meta], args=[status, data, channel, "1" if only_if_lease_expired else "0"]
        )
        if fields is None:
            return None
        info = self._info(stream_id, fields)
        watched = self._watched.get(stream_id)
        if info is not None and watched is not None and watched.hi < info.last_position:
            self._spawn(self._refresh(watched))
        return info

    @_unavailable_on_error
    async def read_after(self, stream_id: str, position: int, *, limit: int) -> list[StreamEvent]:
        watched = self._watched.get(stream_id)
        if watched is not None:
            cached = watched.slice_after(position, limit)
            if cached is not None:
                return cached
        return await self._xrange(stream_id, position, limit)

    async def _xrange(self, stream_id: str, position: int, limit: int) -> list[StreamEvent]:
        events_key, _, _ = self._keys(stream_id)
        entries: Any = await self.redis.xrange(events_key, min=f"(0-{position}", max="+", count=limit)
        events = []
        for entry_id, fields in entries:
            position_text = _text(entry_id).partition("-")[2]
            data = fields.get(b"d", fields.get("d", ""))
            name = fields.get(b"e", fields.get("e"))
            events.append(StreamEvent(int(position_text), _text(data), None if name is None else _text(name)))
        return events

    @_unavailable_on_error
    async def info(self, stream_id: str) -> StreamInfo | None:
        _, meta, _ = self._keys(stream_id)
        fields = await self.redis.hmget(meta, _INFO_FIELDS)
        return self._info(stream_id, fields)

    @_unavailable_on_error
    async def get_key(self, key: str) -> str | None:
        value = await self.redis.get(self._key_entry(key))
        return None if value is None else _text(value)

    @_unavailable_on_error
    async def compare_and_set_key(
        self, key: str, expected: str | None, new: str | None, *, ttl: float
    ) -> bool:
        done = await self._set_key(keys=[self._key_entry(key)], args=[expected or "", new or "", _ms(ttl)])
        return bool(int(done))

    # -- watching: one Pub/Sub connection and one window per stream, shared by this process's readers --

    @contextlib.asynccontextmanager
    async def watch(self, stream_id: str) -> AsyncIterator[StreamWatch]:
        watched = self._watched.get(stream_id)
        if watched is None:
            watched = _Watched(self, stream_id, self.window)
            self._watched[stream_id] = watched
            self._spawn(self._start_watch(watched))
        watched.refs += 1
        try:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(watched.ready.wait(), _SUBSCRIBE_TIMEOUT)
            yield watched
        finally:
            watched.refs -= 1
            if watched.refs == 0 and self._watched.get(stream_id) is watched:
                del self._watched[stream_id]
                self._spawn(self._stop_watch(watched))

    async def _start_watch(self, watched: _Watched) -> None:
        _, meta, channel = self._keys(watched._stream_id)  # noqa: SLF001 - part of the store
        try:
            self._channels[channel] = watched
            if self._pubsub is None:
                self._pubsub = self.redis.pubsub()
            await self._pubsub.subscribe(channel)
            if self._reader is None or self._reader.done():
                self._reader = asyncio.create_task(self._read_notifications(self._pubsub))
            with contextlib.suppress(asyncio.TimeoutError):
                # Read the last position only once subscribed, so no write falls between the two.
                await asyncio.wait_for(watched.subscribed.wait(), _SUBSCRIBE_TIMEOUT)
            last = await self.redis.hget(meta, "last")
            watched.events.clear()
            watched.hi = int(last) if last is not None else 0
        except RedisError:
            logger.warning("could not subscribe to %s; readers fall back to polling", channel, exc_info=True)
        finally:
            watched.ready.set()

    async def _stop_watch(self, watched: _Watched) -> None:
        _, _, channel = self._keys(watched._stream_id)  # noqa: SLF001 - part of the store
        if self._channels.get(channel) is watched:
            del self._channels[channel]
        if self._pubsub is not None and channel not in self._channels:
            with contextlib.suppress(RedisError):
                await self._pubsub.unsubscribe(channel)

    async def _read_notifications(self, pubsub: PubSub) -> None:
        backoff = 0.05
        # A flag, not only cancellation: a cancel that lands inside redis-py's timed read can be taken
        # for the read's own timeout and swallowed.
        while not self._closing:
            try:
                message = await pubsub.get_message(timeout=_PUBSUB_READ_TIMEOUT)
                backoff = 0.05
            except (RedisError, OSError):
                logger.warning("lost the Pub/Sub connection; re-reading every watched stream", exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                for stale in list(self._channels.values()):
                    self._spawn(self._refresh(stale))
                continue
            if message is None:
                continue
            watched = self._channels.get(_text(message["channel"]))
            if watched is None:
                continue
            if message["type"] == "subscribe":
                watched.subscribed.set()
            elif (
                message["type"] == "message"
                and watched.ready.is_set()
                and int(message["data"]) > max(watched.hi, watched.appending)
            ):
                self._spawn(self._refresh(watched))

    async def _refresh(self, watched: _Watched) -> None:
        """Read what is new after the window into it; concurrent calls fold into one running loop."""
        if watched.refreshing:
            watched.dirty = True
            return
        watched.refreshing = True
        try:
            while True:
                watched.dirty = False
                events = await self._xrange(watched._stream_id, watched.hi, self.window)  # noqa: SLF001
                watched.extend(events)
                if not watched.dirty and len(events) < self.window:
                    return
        except RedisError:
            logger.warning("could not read stream %s", watched._stream_id, exc_info=True)  # noqa: SLF001
        finally:
            watched.refreshing = False

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closing = True
        tasks = [*self._tasks, *([self._reader] if self._reader is not None else [])]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2 * _PUBSUB_READ_TIMEOUT)
        self._reader = None
        self._closing = False
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None
        self._watched.clear()
        self._channels.clear()
        if self._owns_client:
            await self.redis.aclose()
