"""The production store: one Redis Stream per generation, shared by every worker and host.

Key layout (``P`` is ``key_prefix``; ``T`` is the stream id's 4-character slot tag, a Redis Cluster
hash tag, so a stream's keys share a slot; a keyed stream's tag is its key's, see ``_ids``):

- ``P:{T}:<id>:events``: a Redis Stream; the entry id of the event at position ``n`` is ``0-n``, so
  ``XRANGE (0-n +`` is "everything after position n" with no lookup table;
- ``P:{T}:<id>:meta``: a hash with ``status``, ``last`` (newest position), ``lease`` (Redis server time in ms
  until which the producer is presumed alive), ``ttl`` (ms to keep the stream after it ends), ``route``,
  ``key``, ``owner``, ``format``, ``hold`` (the lease's length, ms) and ``claimed`` (``0`` until a writer
  takes over a stream opened for one);
- ``P:{T}:<id>:notify``: a Pub/Sub channel; every write publishes the new last position, and
  ``P:{T}:<id>:end`` the terminal one (what a process that writes the stream listens to);
- ``P:{T}:key:<key>``: the id of the key's running stream, in the same slot as all of the key's streams;
- ``P:{T}:counter:<name>``: a counter of shared limits (a sorted set of members and their expiry), ``T``
  the name's tag;
- ``P:{T}:name:<name>``: the id of the durable stream of that name (``litestar_resumable.durable_streams``),
  ``T`` the name's tag, which is its streams' tag too. A durable stream's meta hash holds its protocol
  state besides the usual fields (``_redis_durable_lib.lua``); its writes are the ``_redis_durable_*.lua``
  scripts.

Writes are Lua scripts shipped beside this module (with ``_redis_lib.lua`` prepended), so create + key
claim, append + position + lease + expiry, and finish + key release are each atomic. Lease times come
from Redis's own clock, so hosts need no clock agreement. Reads that may be large go through a script
too, which stops at a byte budget. Script calls and the small reads (a meta hash, a key's holder) are
sent together, one pipeline per turn of the event loop (``_redis_calls``); watching is in
``_redis_watch``, subscriptions in ``_redis_pubsub``.

A Redis Cluster works the same: every script touches one slot (a stream's keys, and for a keyed stream
its key's entry, share the stream id's tag), and notifications use sharded Pub/Sub, so they reach the one
shard that holds the stream.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Callable, Coroutine
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from litestar_resumable._errors import (
    KeyConflictError,
    StoreUnavailableError,
    StreamExistsError,
    StreamLimitError,
)
from litestar_resumable._events import StreamEvent, StreamInfo, StreamStatus, TerminalStatus, terminal_data
from litestar_resumable._ids import key_tag, stream_tag
from litestar_resumable._store._redis_calls import Script, ScriptCalls
from litestar_resumable._store._redis_pubsub import ClassicSubscriber, ShardedSubscriber
from litestar_resumable._store._redis_watch import Watches
from litestar_resumable._store.base import (
    DurableAppend,
    DurableStream,
    Fork,
    Producer,
    StreamStore,
    media_type,
    take_within,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from litestar_resumable._options import ConflictPolicy
    from litestar_resumable._store.base import StreamWatch

__all__ = ("RedisStreamStore",)

P = ParamSpec("P")
T = TypeVar("T")

INFO_FIELDS = ("status", "last", "route", "key", "owner", "format", "hold")
_READ_ALL = 1 << 62  # "no byte limit" for the read script
_FORK_READ_BYTES = 1024 * 1024  # a fork copies its source's events a mebibyte per read


def _script(name: str, *libs: str) -> Script:
    package = files("litestar_resumable._store")
    text = "".join(package.joinpath(part).read_text("utf-8") for part in ("_redis_lib.lua", *libs, name))
    sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - the name Redis gives a script
    return Script(name.removeprefix("_redis_").removesuffix(".lua"), text, sha)


CREATE, CLAIM, APPEND, FINISH, READ, SLOTS = (
    _script(f"_redis_{name}.lua") for name in ("create", "claim", "append", "finish", "read", "slots")
)
DURABLE_CREATE, DURABLE_APPEND, DURABLE_READ, DURABLE_DELETE, DURABLE_FORK = (
    _script(f"_redis_durable_{name}.lua", "_redis_durable_lib.lua")
    for name in ("create", "append", "read", "delete", "fork")
)


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


def _events_of(entries: Any) -> list[StreamEvent]:
    events = []
    for entry_id, fields in entries:
        if isinstance(fields, dict):  # XRANGE's reply, parsed by redis-py
            data, name = fields.get(b"d", fields.get("d", "")), fields.get(b"e", fields.get("e"))
        else:  # a script's reply: the raw field list 'd', data[, 'e', name]
            data, name = fields[1], fields[3] if len(fields) > 3 else None  # noqa: PLR2004
        position = int(_text(entry_id).partition("-")[2])
        events.append(StreamEvent(position, _text(data), None if name is None else _text(name)))
    return events


def _durable_of(stream_id: str, fields: Sequence[Any]) -> DurableStream:
    """A durable stream from its meta hash's ``DURABLE_FIELDS`` (``_redis_durable_lib.lua``)."""
    status, last, content_type, owner, ttl, expires, closed_by, name, _, fork, deleted = (
        None if value is None else _text(value) for value in fields[:11]
    )
    return DurableStream(
        stream_id,
        name or "",
        content_type or "",
        status,  # type: ignore[arg-type] # only scripts write it
        int(last or 0),
        owner[1:] if owner else None,
        int(ttl) if ttl else None,
        int(expires) / 1000 if expires else None,
        closed_by or None,
        fork or None,
        deleted == "1",
    )


def _optional_int(value: Any) -> int | None:
    text = _text(value)
    return int(text) if text else None


# -- what every writer of the layout shares (this store, and SyncStreamWriter on redis-py's sync client) --


def names_of(key_prefix: str, stream_id: str) -> tuple[str, str, str]:
    """A stream's base (prefix and slot tag), events key and meta key."""
    base = f"{key_prefix}:{{{stream_tag(stream_id)}}}"
    return base, f"{base}:{stream_id}:events", f"{base}:{stream_id}:meta"


def channel_of(key_prefix: str, stream_id: str, *, ends_only: bool = False) -> str:
    return f"{key_prefix}:{{{stream_tag(stream_id)}}}:{stream_id}:{'end' if ends_only else 'notify'}"


def append_args(
    base: str, stream_id: str, sharded: str, events: Sequence[StreamEvent], lease: float
) -> list[Any]:
    """The append script's arguments (see _redis_append.lua)."""
    args: list[Any] = [_ms(lease), base, stream_id, sharded, events[0].position if events else 0]
    for event in events:
        args.append(event.event or "")
        args.append(event.data)
    return args


def finish_args(
    base: str, stream_id: str, status: TerminalStatus, message: str | None, *, sharded: str, if_expired: bool
) -> list[Any]:
    """The finish script's arguments (see _redis_finish.lua)."""
    return [base, stream_id, status, terminal_data(status, message), "1" if if_expired else "0", sharded]


def info_of(stream_id: str, fields: list[Any]) -> StreamInfo | None:
    """A stream's info from its meta hash's ``INFO_FIELDS``; None for no stream."""
    status, last, route, key, owner, format_name, hold = fields
    if status is None:
        return None
    status_text: StreamStatus = _text(status)  # type: ignore[assignment] # only scripts write it
    key_text = _text(key) if key is not None else ""
    owner_text = _text(owner) if owner is not None else ""
    return StreamInfo(
        stream_id,
        status_text,
        int(last),
        _text(route) if route is not None else "",
        key_text or None,
        owner_text[1:] if owner_text else None,
        _text(format_name) if format_name is not None else "sse",
        int(hold) / 1000 if hold is not None else 0.0,
    )


class RedisStreamStore(StreamStore):
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

    max_fork_bytes: int = 64 * 1024 * 1024
    """The most bytes of a source's events a fork copies (the copy passes through this process once)."""

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

    @_unavailable_on_error
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
            _ms(lease),
            _ms(ttl),
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
        outcome, other = (_text(part) for part in await self._calls.call(CREATE, keys, args))
        if outcome == "exists":
            raise StreamExistsError(stream_id)
        if outcome == "conflict":
            raise KeyConflictError(other)
        return other or None

    @_unavailable_on_error
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
            status = _text(await self._calls.call(APPEND, [events_key, meta], args))
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

    @_unavailable_on_error
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
        return _events_of(entries), int(last)

    @_unavailable_on_error
    async def read_after(
        self, stream_id: str, position: int, *, limit: int, max_bytes: int | None = None
    ) -> list[StreamEvent]:
        watched = self._watches.get(stream_id)
        if watched is not None:
            cached = watched.slice_after(position, limit)
            if cached is not None:
                return take_within(cached, max_bytes)
        events, _ = await self.read(stream_id, position, limit, _READ_ALL if max_bytes is None else max_bytes)
        return events

    async def last_position(self, stream_id: str) -> int:
        _, _, meta = self._names(stream_id)
        last = await self._calls.command("HGET", meta, "last")
        return int(last) if last is not None else 0

    @_unavailable_on_error
    async def info(self, stream_id: str) -> StreamInfo | None:
        _, _, meta = self._names(stream_id)
        fields = await self._calls.command("HMGET", meta, *INFO_FIELDS)
        return self._info(stream_id, fields)

    @_unavailable_on_error
    async def key_holder(self, key: str) -> str | None:
        value = await self._calls.command("GET", f"{self.key_prefix}:{{{key_tag(key)}}}:key:{key}")
        return None if value is None else _text(value)

    # -- counters (shared limits) --

    def _counter(self, counter: str) -> str:
        return f"{self.key_prefix}:{{{key_tag(counter)}}}:counter:{counter}"

    @_unavailable_on_error
    async def take_slot(self, counter: str, member: str, limit: int, *, ttl: float) -> bool:
        taken = await self._calls.call(SLOTS, [self._counter(counter)], ["take", _ms(ttl), limit, member])
        return bool(int(taken))

    @_unavailable_on_error
    async def renew_slots(self, counter: str, members: Sequence[str], *, ttl: float) -> None:
        if members:
            await self._calls.call(SLOTS, [self._counter(counter)], ["renew", _ms(ttl), 0, *members])

    @_unavailable_on_error
    async def drop_slot(self, counter: str, member: str) -> None:
        await self._calls.call(SLOTS, [self._counter(counter)], ["drop", 0, 0, member])

    # -- durable streams --

    def _name_key(self, name: str) -> str:
        return f"{self.key_prefix}:{{{key_tag(name)}}}:name:{name}"

    @_unavailable_on_error
    async def durable_id(self, name: str) -> str | None:
        value = await self.redis.get(self._name_key(name))
        return None if value is None else _text(value)

    @_unavailable_on_error
    async def create_durable(
        self,
        stream_id: str,
        *,
        name: str,
        content_type: str,
        data: Sequence[tuple[str | None, str]] = (),
        close: bool = False,
        owner: str | None = None,
        ttl: int | None = None,
        expires_at: float | None = None,
        fork: Fork | None = None,
    ) -> tuple[bool, DurableStream]:
        if stream_tag(stream_id) != key_tag(name):
            raise ValueError("a durable stream's id must have its name's tag (new_stream_id(name))")
        base, _, _ = self._names(stream_id)
        args: list[Any] = [
            base,
            stream_id,
            name,
            content_type,
            media_type(content_type),
            "" if owner is None else f"={owner}",
            "" if ttl is None else ttl,
            "" if expires_at is None else round(expires_at * 1000),
            "1" if close else "0",
            terminal_data("done"),
            "" if fork is None else fork.source_id,
            "" if fork is None else fork.spec,
        ]
        if fork is None:
            return await self._create_durable(stream_id, name, args, data)
        # The source may be in another slot of a cluster: count the fork in first (so that the source
        # cannot go meanwhile), copy its events here, create, and count it out again if not created.
        if await self._count_fork(fork.source_id, 1) is None:
            raise ValueError(f"the fork's source {fork.source_id} is gone")
        created = False
        try:
            inherited = await self._events_up_to(fork.source_id, fork.position)
            copied = [(event.event, event.data) for event in inherited]
            created, stream = await self._create_durable(stream_id, name, args, [*copied, *data])
        finally:
            if not created:
                await self._count_fork(fork.source_id, -1)
        return created, stream

    async def _create_durable(
        self, stream_id: str, name: str, args: list[Any], data: Sequence[tuple[str | None, str]]
    ) -> tuple[bool, DurableStream]:
        _, events_key, meta = self._names(stream_id)
        for event, text in data:
            args.append(event or "")
            args.append(text)
        try:
            reply = await self._calls.call(DURABLE_CREATE, [self._name_key(name), meta, events_key], args)
        except ResponseError as exc:
            if "stream exists" in str(exc):
                raise StreamExistsError(stream_id) from exc
            raise
        outcome, existing = _text(reply[0]), _text(reply[1])
        return outcome == "created", _durable_of(existing, reply[2:])

    async def _count_fork(self, source_id: str, delta: int) -> tuple[int, bool] | None:
        """Count a fork of ``source_id`` in or out: its forks and whether it is marked deleted after."""
        _, _, meta = self._names(source_id)
        outcome, forks, deleted = await self._calls.call(DURABLE_FORK, [meta], [str(delta)])
        return None if _text(outcome) != "ok" else (int(forks), _text(deleted) == "1")

    async def _events_up_to(self, stream_id: str, position: int) -> list[StreamEvent]:
        """The first ``position`` events of a fork's source, read a mebibyte at a time, at most
        :attr:`max_fork_bytes` in all (:class:`StreamLimitError` past it)."""
        events: list[StreamEvent] = []
        copied = 0
        while len(events) < position:
            batch, _ = await self.read(stream_id, len(events), position - len(events), _FORK_READ_BYTES)
            batch = [event for event in batch if not event.is_terminal and event.position <= position]
            if not batch:
                raise ValueError(f"the fork's source {stream_id} has fewer than {position} events")
            copied += sum(event.nbytes for event in batch)
            if copied > self.max_fork_bytes:
                raise StreamLimitError(f"a fork copies {self.max_fork_bytes} bytes at most (max_fork_bytes)")
            events.extend(batch)
        return events

    @_unavailable_on_error
    async def append_durable(
        self,
        stream_id: str,
        data: Sequence[tuple[str | None, str]],
        *,
        content_type: str,
        stream_seq: str | None = None,
        producer: Producer | None = None,
        close: bool = False,
    ) -> DurableAppend:
        base, events_key, meta = self._names(stream_id)
        args: list[Any] = [
            base,
            stream_id,
            self._sharded,
            media_type(content_type),
            stream_seq or "",
            "0" if stream_seq is None else "1",
            "" if producer is None else producer.producer_id,
            0 if producer is None else producer.epoch,
            0 if producer is None else producer.seq,
            "1" if close else "0",
            terminal_data("done"),
        ]
        for event, text in data:
            args.append(event or "")
            args.append(text)
        outcome, tail, closed, epoch, seq = await self._calls.call(DURABLE_APPEND, [events_key, meta], args)
        watched = self._watches.get(stream_id)
        if watched is not None:
            self._watches.catch_up(watched)
        return DurableAppend(
            _text(outcome),  # type: ignore[arg-type] # only the script writes it
            int(tail),
            closed=_text(closed) == "1",
            producer_epoch=_optional_int(epoch),
            producer_seq=_optional_int(seq),
        )

    @_unavailable_on_error
    async def read_durable(
        self,
        stream_id: str,
        position: int,
        *,
        limit: int,
        max_bytes: int | None = None,
        touch: bool = True,
    ) -> tuple[DurableStream | None, list[StreamEvent]]:
        base, events_key, meta = self._names(stream_id)
        budget = _READ_ALL if max_bytes is None else max_bytes
        args = [position, limit, budget, "1" if touch else "0", base]
        reply = await self._calls.call(DURABLE_READ, [events_key, meta], args)
        if not reply:
            return None, []
        return _durable_of(stream_id, reply), _events_of(reply[-1])

    @_unavailable_on_error
    async def delete_durable(self, stream_id: str) -> bool:
        outcome, source_id = await self._delete_one(stream_id)
        while source_id:  # the stream was the last fork of a deleted source: that goes too, and so on
            counted = await self._count_fork(source_id, -1)
            if counted is None or counted != (0, True):
                break
            _, source_id = await self._delete_one(source_id, collect=True)
        return outcome != "none"

    async def _delete_one(self, stream_id: str, *, collect: bool = False) -> tuple[str, str]:
        base, events_key, meta = self._names(stream_id)
        args = [base, stream_id, self._sharded, "1" if collect else "0"]
        reply = await self._calls.call(DURABLE_DELETE, [events_key, meta], args)
        return _text(reply[0]), _text(reply[1])

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
