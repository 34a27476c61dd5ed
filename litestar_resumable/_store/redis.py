"""The production store: one Redis Stream per generation, shared by every worker and host.

Writes are Lua scripts shipped beside this module (with ``_redis_lib.lua`` prepended), so create + key
claim, append + position + lease + expiry, and finish + key release are each atomic. Lease times come
from Redis's own clock, so hosts need no clock agreement. Reads that may be large go through a script
too, which stops at a byte budget. The key layout and the scripts are in ``_redis_layout``. Script calls
and the small reads (a meta hash, a key's holder) are sent together, one pipeline per turn of the event
loop (``_redis_calls``); watching is in ``_redis_watch``, subscriptions in ``_redis_pubsub``, and the
methods of durable streams in ``_redis_durable``.

A Redis Cluster works the same: every script touches one slot (a stream's keys, and for a keyed stream
its key's entry, share the stream id's tag), and notifications use sharded Pub/Sub, so they reach the one
shard that holds the stream.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from litestar_resumable._errors import KeyConflictError, StoreUnavailableError, StreamExistsError
from litestar_resumable._events import StreamEvent, StreamInfo, TerminalStatus, terminal_data
from litestar_resumable._ids import key_tag
from litestar_resumable._store._redis_calls import ScriptCalls
from litestar_resumable._store._redis_durable import RedisDurableStreams
from litestar_resumable._store._redis_layout import (
    APPEND,
    CLAIM,
    CREATE,
    FINISH,
    INFO_FIELDS,
    READ,
    READ_ALL,
    SLOTS,
    append_args,
    channel_of,
    events_of,
    finish_args,
    info_of,
    ms,
    names_of,
    text_of,
    unavailable_on_error,
)
from litestar_resumable._store._redis_pubsub import ClassicSubscriber, ShardedSubscriber
from litestar_resumable._store._redis_watch import Watches
from litestar_resumable._store.base import take_within

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from litestar_resumable._options import ConflictPolicy
    from litestar_resumable._store.base import StreamWatch

__all__ = ("RedisStreamStore",)


class RedisStreamStore(RedisDurableStreams):
    """Keep streams in Redis (Redis Streams + Lua), shared by every worker and host that uses it.

    Args:
        redis: A ``redis.asyncio.Redis`` client, or a ``redis.asyncio.RedisCluster`` for a Redis Cluster;
            the app keeps it and closes it.
        key_prefix: The start of every key this store writes, so several apps can share one Redis.
        window_bytes: Bytes of recent events kept per watched stream and process for local readers.
        replicas: With more than 0, a write counts as done only once that many replicas have it (Redis's
            ``WAIT``), so that a failover to one of them keeps it: see docs/scaling.md for what each
            setting promises, and what it costs.
        replica_timeout: Seconds a write waits for its replicas before it is retried.
    """

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        key_prefix: str = "resumable",
        window_bytes: int = 256 * 1024,
        replicas: int = 0,
        replica_timeout: float = 1.0,
    ) -> None:
        if replicas < 0:
            raise ValueError(f"replicas must be >= 0, got {replicas!r}")
        self.redis = redis
        self.key_prefix = key_prefix
        self.cluster = isinstance(redis, RedisCluster)
        self._owns_client = False
        self._sharded = "1" if self.cluster else "0"
        self._calls = ScriptCalls(
            redis, cluster=self.cluster, replicas=replicas, replica_timeout=replica_timeout
        )
        self._watches = Watches(self, self, window_bytes)
        self._watches.subscriber = (
            ShardedSubscriber(redis, self._watches.hear)  # type: ignore[arg-type]
            if self.cluster
            else ClassicSubscriber(redis, self._watches.hear)  # type: ignore[arg-type]
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        cluster: bool = False,
        key_prefix: str = "resumable",
        window_bytes: int = 256 * 1024,
        replicas: int = 0,
        replica_timeout: float = 1.0,
        max_connections: int = 32,
        pool_timeout: float = 10.0,
        **redis_kwargs: Any,
    ) -> RedisStreamStore:
        """Connect to the Redis at ``url`` (with ``cluster=True``, the cluster one of whose nodes it names);
        the store owns the client and closes it on shutdown.

        A standalone Redis's commands share a ``redis.asyncio.BlockingConnectionPool`` of at most
        ``max_connections`` connections (one of them is the Pub/Sub connection) and wait up to
        ``pool_timeout`` seconds for a free one; ``redis_kwargs`` go to the pool. redis-py's default pool
        instead fails a command at once ("Too many connections") past its cap. A cluster client
        (``redis.asyncio.RedisCluster.from_url(url, **redis_kwargs)``) keeps up to ``max_connections``
        connections per node, and the store's pipelines keep few of them busy.
        """
        options = {"key_prefix": key_prefix, "window_bytes": window_bytes, "replicas": replicas}
        client: Redis | RedisCluster
        if cluster:
            client = RedisCluster.from_url(url, max_connections=max_connections, **redis_kwargs)
        else:
            # A pool built by hand gets no retries from redis-py (Redis.from_url's would): a connection
            # left stale by a restarted server would fail the command that finds it.
            redis_kwargs.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3))
            pool = BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=pool_timeout, **redis_kwargs
            )
            client = Redis.from_pool(pool)
        store = cls(client, replica_timeout=replica_timeout, **options)  # type: ignore[arg-type]
        store._owns_client = True
        return store

    # -- names --

    def _names(self, stream_id: str) -> tuple[str, str, str]:
        """The stream's base, events key and meta key."""
        return names_of(self.key_prefix, stream_id)

    def channel(self, stream_id: str, *, ends_only: bool = False) -> str:
        return channel_of(self.key_prefix, stream_id, ends_only=ends_only)

    _info = staticmethod(info_of)

    # -- writes --

    @unavailable_on_error
    async def create(
        self,
        stream_id: str,
        *,
        route: str,
        lease: float,
        ttl: float,
        key: str | None = None,
        owner: str | None = None,
        format: str = "sse",  # noqa: A002 - the stream's format name
        on_conflict: ConflictPolicy = "cancel",
        claimed: bool = True,
    ) -> str | None:
        base, _, meta = self._names(stream_id)
        keys = [meta] if key is None else [meta, f"{base}:key:{key}"]
        # An owner is stored with a leading '=' so that an empty owner id stays distinct from none.
        args: list[str | int] = [
            base,
            stream_id,
            ms(lease),
            ms(ttl),
            route,
            key or "",
            "" if owner is None else f"={owner}",
            format,
            on_conflict,
            terminal_data("cancelled"),
            terminal_data("interrupted"),
            self._sharded,
            "1" if claimed else "0",
        ]
        outcome, other = (text_of(part) for part in await self._calls.call(CREATE, keys, args))
        if outcome == "exists":
            raise StreamExistsError(stream_id)
        if outcome == "conflict":
            raise KeyConflictError(other)
        return other or None

    @unavailable_on_error
    async def claim(self, stream_id: str) -> bool:
        _, events_key, meta = self._names(stream_id)
        return bool(int(await self._calls.call(CLAIM, [events_key, meta], [])))

    async def append(self, stream_id: str, events: Sequence[StreamEvent], *, lease: float) -> bool:
        # The hot path: no decorator (a frame less per call); the same mapping of errors, inline.
        base, events_key, meta = self._names(stream_id)
        args = append_args(base, stream_id, self._sharded, events, lease)
        watched = self._watches.get(stream_id)
        last = events[-1].position if events else 0
        if watched is not None:
            watched.appending = max(watched.appending, last)
        try:
            status = text_of(await self._calls.call(APPEND, [events_key, meta], args))
        except BaseException as exc:
            if watched is not None:
                self._watches.catch_up(watched)  # a notification skipped for this write is read now
            if isinstance(exc, ResponseError) and "append at position" in str(exc):
                raise ValueError(str(exc)) from exc  # the store's contract: a wrong position is ValueError
            if isinstance(exc, (RedisConnectionError, RedisTimeoutError, OSError)):
                raise StoreUnavailableError(f"Redis is out of reach: {exc}") from exc
            raise
        if watched is not None:
            if status == "running":
                watched.extend(events)
            if watched.hi < last or status != "running":
                self._watches.catch_up(watched)
        return status == "running"

    @unavailable_on_error
    async def finish(
        self,
        stream_id: str,
        status: TerminalStatus,
        *,
        message: str | None = None,
        only_if_lease_expired: bool = False,
    ) -> StreamInfo | None:
        base, events_key, meta = self._names(stream_id)
        args = finish_args(
            base, stream_id, status, message, sharded=self._sharded, if_expired=only_if_lease_expired
        )
        fields = await self._calls.call(FINISH, [events_key, meta], args)
        info = None if fields is None else self._info(stream_id, fields)
        watched = self._watches.get(stream_id)
        if info is not None and watched is not None and watched.hi < info.last_position:
            self._watches.catch_up(watched)
        return info

    # -- reads --

    async def read(
        self, stream_id: str, position: int, limit: int, max_bytes: int
    ) -> tuple[list[StreamEvent], int]:
        """Events after ``position`` (within ``max_bytes``), and the stream's last position (-1: gone)."""
        _, events_key, meta = self._names(stream_id)
        last, entries = await self._calls.call(READ, [events_key, meta], [position, limit, max_bytes])
        return events_of(entries), int(last)

    @unavailable_on_error
    async def read_after(
        self, stream_id: str, position: int, *, limit: int, max_bytes: int | None = None
    ) -> list[StreamEvent]:
        watched = self._watches.get(stream_id)
        if watched is not None:
            cached = watched.slice_after(position, limit)
            if cached is not None:
                return take_within(cached, max_bytes)
        events, _ = await self.read(stream_id, position, limit, READ_ALL if max_bytes is None else max_bytes)
        return events

    async def last_position(self, stream_id: str) -> int:
        _, _, meta = self._names(stream_id)
        last = await self._calls.command("HGET", meta, "last")
        return int(last) if last is not None else 0

    @unavailable_on_error
    async def info(self, stream_id: str) -> StreamInfo | None:
        _, _, meta = self._names(stream_id)
        fields = await self._calls.command("HMGET", meta, *INFO_FIELDS)
        return self._info(stream_id, fields)

    @unavailable_on_error
    async def key_holder(self, key: str) -> str | None:
        value = await self._calls.command("GET", f"{self.key_prefix}:{{{key_tag(key)}}}:key:{key}")
        return None if value is None else text_of(value)

    # -- counters (shared limits) --

    def _counter(self, counter: str) -> str:
        return f"{self.key_prefix}:{{{key_tag(counter)}}}:counter:{counter}"

    @unavailable_on_error
    async def take_slot(self, counter: str, member: str, limit: int, *, ttl: float) -> bool:
        taken = await self._calls.call(SLOTS, [self._counter(counter)], ["take", ms(ttl), limit, member])
        return bool(int(taken))

    @unavailable_on_error
    async def renew_slots(self, counter: str, members: Sequence[str], *, ttl: float) -> None:
        if members:
            await self._calls.call(SLOTS, [self._counter(counter)], ["renew", ms(ttl), 0, *members])

    @unavailable_on_error
    async def drop_slot(self, counter: str, member: str) -> None:
        await self._calls.call(SLOTS, [self._counter(counter)], ["drop", 0, 0, member])

    # -- watching --

    @contextlib.asynccontextmanager
    async def watch(self, stream_id: str, *, writing: bool = False) -> AsyncIterator[StreamWatch]:
        async with self._watches.watch(stream_id, writing=writing) as watched:
            yield watched

    async def close(self) -> None:
        await self._watches.close()
        await self._calls.close()
        if self._owns_client:
            await self.redis.aclose()
