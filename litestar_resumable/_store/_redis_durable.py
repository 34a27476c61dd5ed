"""The Redis store's durable streams: the methods :class:`RedisStreamStore` (``redis``) inherits.

A durable stream (``litestar_resumable.durable_streams``) is a stream whose meta hash also holds its
protocol state (``_redis_durable_lib.lua``), named by a key ``P:{T}:name:<name>`` (see ``_redis_layout``);
its writes are the ``_redis_durable_*.lua`` scripts, loaded here. A fork's source may be in another slot of
a cluster, so a fork copies the source's events through this process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.exceptions import ResponseError

from litestar_resumable._errors import StreamExistsError, StreamLimitError
from litestar_resumable._events import StreamEvent, terminal_data
from litestar_resumable._ids import key_tag, stream_tag
from litestar_resumable._store._redis_layout import READ_ALL, events_of, script, text_of, unavailable_on_error
from litestar_resumable._store.base import StreamStore
from litestar_resumable._store.durable_types import DurableAppend, DurableStream, Fork, Producer, media_type

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis, RedisCluster

    from litestar_resumable._store._redis_calls import ScriptCalls
    from litestar_resumable._store._redis_watch import Watches

__all__ = ("RedisDurableStreams",)

_FORK_READ_BYTES = 1024 * 1024  # a fork copies its source's events a mebibyte per read

DURABLE_CREATE, DURABLE_APPEND, DURABLE_READ, DURABLE_DELETE, DURABLE_FORK = (
    script(f"_redis_durable_{name}.lua", "_redis_durable_lib.lua")
    for name in ("create", "append", "read", "delete", "fork")
)


def _durable_of(stream_id: str, fields: Sequence[Any]) -> DurableStream:
    """A durable stream from its meta hash's ``DURABLE_FIELDS`` (``_redis_durable_lib.lua``)."""
    status, last, content_type, owner, ttl, expires, closed_by, name, _, fork, deleted = (
        None if value is None else text_of(value) for value in fields[:11]
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
    text = text_of(value)
    return int(text) if text else None


class RedisDurableStreams(StreamStore):
    """The durable-stream methods of :class:`~litestar_resumable.RedisStreamStore`, which inherits them."""

    max_fork_bytes: int = 64 * 1024 * 1024
    """The most bytes of a source's events a fork copies (the copy passes through this process once)."""

    if TYPE_CHECKING:  # what these methods use of the store (``redis``)
        redis: Redis | RedisCluster
        key_prefix: str
        _sharded: str
        _calls: ScriptCalls
        _watches: Watches

        def _names(self, stream_id: str) -> tuple[str, str, str]: ...
        async def read(
            self, stream_id: str, position: int, limit: int, max_bytes: int
        ) -> tuple[list[StreamEvent], int]: ...

    def _name_key(self, name: str) -> str:
        return f"{self.key_prefix}:{{{key_tag(name)}}}:name:{name}"

    @unavailable_on_error
    async def durable_id(self, name: str) -> str | None:
        value = await self.redis.get(self._name_key(name))
        return None if value is None else text_of(value)

    @unavailable_on_error
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
        outcome, existing = text_of(reply[0]), text_of(reply[1])
        return outcome == "created", _durable_of(existing, reply[2:])

    async def _count_fork(self, source_id: str, delta: int) -> tuple[int, bool] | None:
        """Count a fork of ``source_id`` in or out: its forks and whether it is marked deleted after."""
        _, _, meta = self._names(source_id)
        outcome, forks, deleted = await self._calls.call(DURABLE_FORK, [meta], [str(delta)])
        return None if text_of(outcome) != "ok" else (int(forks), text_of(deleted) == "1")

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

    @unavailable_on_error
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
            text_of(outcome),  # type: ignore[arg-type] # only the script writes it
            int(tail),
            closed=text_of(closed) == "1",
            producer_epoch=_optional_int(epoch),
            producer_seq=_optional_int(seq),
        )

    @unavailable_on_error
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
        budget = READ_ALL if max_bytes is None else max_bytes
        args = [position, limit, budget, "1" if touch else "0", base]
        reply = await self._calls.call(DURABLE_READ, [events_key, meta], args)
        if not reply:
            return None, []
        return _durable_of(stream_id, reply), events_of(reply[-1])

    @unavailable_on_error
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
        return text_of(reply[0]), text_of(reply[1])
