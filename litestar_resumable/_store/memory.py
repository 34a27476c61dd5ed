"""The embedded store: everything in this process's memory.

The default when no store is given. It needs no server, so it also serves as the in-process fake for
users' own tests. It is one process only: streams are not shared between workers and do not survive a
restart.

Memory is bounded by ``max_bytes``: the UTF-8 bytes of stored data plus a fixed overhead per event.
When a new stream or event would pass it, ended streams are dropped soonest-to-expire first; if running
streams alone fill it, the write is refused with :class:`StoreUnavailableError`. Expired streams are
dropped lazily, at most once a second, when streams are created or read, so the store runs no task of
its own. Every call is free of ``await``, so each one is atomic.

Durable streams (``litestar_resumable.durable_streams``) are streams with a record of their protocol state
and a name in a table of names; they are never dropped to make room, only when they expire or are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from litestar_resumable._errors import KeyConflictError, StoreUnavailableError, StreamExistsError
from litestar_resumable._events import OPENED_ROUTE, StreamEvent, StreamInfo, StreamStatus, TerminalStatus
from litestar_resumable._store.base import (
    DURABLE_FORMAT,
    DurableAppend,
    DurableStream,
    Fork,
    Producer,
    StreamStore,
    StreamWatch,
    media_type,
    take_within,
)
from litestar_resumable._waiting import Signal

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from litestar_resumable._options import ConflictPolicy

__all__ = ("MemoryStreamStore",)

_PURGE_INTERVAL = 1.0
_EVENT_OVERHEAD = 64  # bytes of bookkeeping counted per event, so empty events are not free


@dataclass(eq=False)
class _Durable:
    """The protocol state of a durable stream."""

    name: str
    content_type: str
    ttl: int | None
    expires_at: float | None
    stream_seq: str | None = None
    producers: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (epoch, last seq)
    closed_by: str | None = None
    forked_from: str | None = None
    fork: str | None = None
    forks: int = 0  # streams forked from this one that exist
    deleted: bool = False


@dataclass(eq=False)
class _Stream:
    route: str
    key: str | None
    owner: str | None
    format: str
    ttl: float
    lease: float
    lease_until: float
    expires_at: float
    status: StreamStatus = "running"
    claimed: bool = True
    events: list[StreamEvent] = field(default_factory=list)
    nbytes: int = 0
    changed: Signal = field(default_factory=Signal)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    durable: _Durable | None = None

    @property
    def last(self) -> int:
        return self.events[-1].position if self.events else 0

    def notify(self) -> None:
        self.changed.fire()


class _MemoryWatch(StreamWatch):
    def __init__(self, store: MemoryStreamStore, stream: _Stream | None, stream_id: str) -> None:
        super().__init__(store, stream_id)
        self._stream = stream
        if stream is not None:
            self.ended = stream.ended
        else:
            self.ended.set()

    async def wait(self, position: int, timeout: float) -> bool:
        stream = self._stream
        if stream is None or stream.expires_at <= time.monotonic():
            # Gone: nothing will come; the reader learns it at its next lease check.
            await asyncio.sleep(timeout)
            return False
        if stream.last > position:
            return True
        return await stream.changed.wait(timeout)


class MemoryStreamStore(StreamStore):
    """Keep streams in this process's memory (one worker; lost on restart)."""

    def __init__(self, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._streams: dict[str, _Stream] = {}
        self._keys: dict[str, str] = {}
        self._names: dict[str, str] = {}  # durable streams: name -> stream id
        self._counters: dict[str, dict[str, float]] = {}  # counter -> member -> when it expires
        self._nbytes = 0
        self._next_purge = 0.0

    @property
    def used_bytes(self) -> int:
        """Bytes counted against ``max_bytes`` now."""
        return self._nbytes

    def _get(self, stream_id: str) -> _Stream | None:
        stream = self._streams.get(stream_id)
        if stream is not None and stream.expires_at <= time.monotonic():
            self._drop(stream_id)
            return None
        return stream

    def _drop(self, stream_id: str) -> None:
        stream = self._streams.pop(stream_id)
        self._nbytes -= stream.nbytes
        if stream.key is not None and self._keys.get(stream.key) == stream_id:
            del self._keys[stream.key]
        if stream.durable is not None and self._names.get(stream.durable.name) == stream_id:
            del self._names[stream.durable.name]
        stream.ended.set()
        stream.notify()

    def _purge(self, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + _PURGE_INTERVAL
        for stream_id in [sid for sid, s in self._streams.items() if s.expires_at <= now]:
            self._drop(stream_id)

    def _reserve(self, nbytes: int) -> None:
        """Make room for ``nbytes`` more, dropping ended streams, or refuse."""
        if self._nbytes + nbytes <= self.max_bytes:
            return
        self._purge(time.monotonic())
        ended = sorted(
            (s.expires_at, sid)
            for sid, s in self._streams.items()
            if s.status != "running" and s.durable is None
        )
        for _, stream_id in ended:
            if self._nbytes + nbytes <= self.max_bytes:
                return
            self._drop(stream_id)
        if self._nbytes + nbytes > self.max_bytes:
            raise StoreUnavailableError(
                f"MemoryStreamStore is full ({self.max_bytes} bytes of running and durable streams)"
            )

    def _add(self, stream: _Stream, events: Sequence[StreamEvent], extra: int = 0) -> None:
        nbytes = sum(event.nbytes + _EVENT_OVERHEAD for event in events) + extra
        self._reserve(nbytes)
        stream.events.extend(events)
        stream.nbytes += nbytes
        self._nbytes += nbytes

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
        now = time.monotonic()
        self._purge(now)
        if stream_id in self._streams:
            raise StreamExistsError(stream_id)
        replaced = None
        holder_id = None if key is None else self._keys.get(key)
        holder = None if holder_id is None else self._get(holder_id)
        if holder_id is not None and holder is not None and holder.status == "running":
            if holder.lease_until <= now:
                self._end(holder_id, holder, "interrupted", None)
            elif on_conflict == "reject":
                raise KeyConflictError(holder_id)
            else:
                self._end(holder_id, holder, "cancelled", None)
                replaced = holder_id
        self._reserve(_EVENT_OVERHEAD)
        self._streams[stream_id] = _Stream(
            route=route,
            key=key,
            owner=owner,
            format=format,
            ttl=ttl,
            lease=lease,
            lease_until=now + lease,
            expires_at=now + lease + ttl,
            claimed=claimed,
            nbytes=_EVENT_OVERHEAD,
        )
        self._nbytes += _EVENT_OVERHEAD
        if key is not None:
            self._keys[key] = stream_id
        return replaced

    async def claim(self, stream_id: str) -> bool:
        stream = self._get(stream_id)
        now = time.monotonic()
        if stream is None or stream.status != "running" or stream.claimed or stream.lease_until <= now:
            return False
        stream.claimed = True
        stream.lease_until = now + stream.lease
        stream.expires_at = now + stream.lease + stream.ttl
        return True

    async def append(self, stream_id: str, events: Sequence[StreamEvent], *, lease: float) -> bool:
        stream = self._get(stream_id)
        if stream is None or stream.status != "running":
            return False
        expected = stream.last + 1
        if events and events[-1].position == expected - 1:
            events = []  # a retry of a batch that is stored already (as the Redis store does)
        if events and events[0].position != expected:
            raise ValueError(f"append at position {events[0].position}, expected {expected}")
        self._add(stream, events)
        now = time.monotonic()
        stream.lease_until = now + lease
        stream.expires_at = now + lease + stream.ttl
        if events:
            stream.notify()
        return True

    def _end(self, stream_id: str, stream: _Stream, status: TerminalStatus, message: str | None) -> None:
        # The terminal event is always stored, even in a full store: a stream must be able to end.
        terminal = StreamEvent.terminal(stream.last + 1, status, message)
        stream.events.append(terminal)
        stream.nbytes += terminal.nbytes + _EVENT_OVERHEAD
        self._nbytes += terminal.nbytes + _EVENT_OVERHEAD
        stream.status = status
        stream.expires_at = time.monotonic() + stream.ttl
        if stream.key is not None and self._keys.get(stream.key) == stream_id:
            del self._keys[stream.key]
        stream.ended.set()
        stream.notify()

    async def finish(
        self,
        stream_id: str,
        status: TerminalStatus,
        *,
        message: str | None = None,
        only_if_lease_expired: bool = False,
    ) -> StreamInfo | None:
        stream = self._get(stream_id)
        if stream is None:
            return None
        if stream.status == "running" and not (
            only_if_lease_expired and stream.lease_until > time.monotonic()
        ):
            self._end(stream_id, stream, status, message)
        return self._info(stream_id, stream)

    async def read_after(
        self, stream_id: str, position: int, *, limit: int, max_bytes: int | None = None
    ) -> list[StreamEvent]:
        stream = self._get(stream_id)
        if stream is None:
            return []
        # Positions are consecutive from 1, so the event after position p is at index p.
        start = max(position, 0)
        return take_within(stream.events[start : start + limit], max_bytes)

    async def info(self, stream_id: str) -> StreamInfo | None:
        self._purge(time.monotonic())
        stream = self._get(stream_id)
        return None if stream is None else self._info(stream_id, stream)

    @staticmethod
    def _info(stream_id: str, stream: _Stream) -> StreamInfo:
        return StreamInfo(
            stream_id,
            stream.status,
            stream.last,
            stream.route,
            stream.key,
            stream.owner,
            stream.format,
            stream.lease,
        )

    async def key_holder(self, key: str) -> str | None:
        stream_id = self._keys.get(key)
        return None if stream_id is None or self._get(stream_id) is None else stream_id

    async def take_slot(self, counter: str, member: str, limit: int, *, ttl: float) -> bool:
        now = time.monotonic()
        members = self._counters.setdefault(counter, {})
        for gone in [m for m, expires in members.items() if expires <= now]:
            del members[gone]
        if member not in members and len(members) >= limit:
            return False
        members[member] = now + ttl
        return True

    async def renew_slots(self, counter: str, members: Sequence[str], *, ttl: float) -> None:
        counted = self._counters.get(counter, {})
        until = time.monotonic() + ttl
        for member in members:
            if member in counted:
                counted[member] = until

    async def drop_slot(self, counter: str, member: str) -> None:
        counted = self._counters.get(counter, {})
        counted.pop(member, None)
        if not counted:
            self._counters.pop(counter, None)

    # -- durable streams --

    async def durable_id(self, name: str) -> str | None:
        stream_id = self._names.get(name)
        return None if stream_id is None or self._get(stream_id) is None else stream_id

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
        now = time.monotonic()
        self._purge(now)
        existing = await self.durable_id(name)
        if existing is not None:
            stream = self._streams[existing]
            return False, self._durable_of(existing, stream)
        if stream_id in self._streams:
            raise StreamExistsError(stream_id)
        inherited: list[StreamEvent] = []
        if fork is not None:
            source = self._get(fork.source_id)
            if source is None or source.durable is None or source.durable.deleted:
                raise ValueError(f"the fork's source {fork.source_id} is gone")
            inherited = [event for event in source.events[: fork.position] if not event.is_terminal]
            if len(inherited) != fork.position:
                raise ValueError(f"the fork's source {fork.source_id} has fewer than {fork.position} events")
        record = _Durable(name, content_type, ttl, expires_at)
        if fork is not None:
            record.forked_from, record.fork = fork.source_id, fork.spec
        nbytes = _EVENT_OVERHEAD + len(name) + len(content_type)
        self._reserve(nbytes)
        stream = _Stream(
            route=OPENED_ROUTE,
            key=None,
            owner=owner,
            format=DURABLE_FORMAT,
            ttl=0.0,
            lease=math.inf,
            lease_until=math.inf,
            expires_at=math.inf,
            nbytes=nbytes,
            durable=record,
        )
        self._nbytes += nbytes
        self._streams[stream_id] = stream
        self._names[name] = stream_id
        self._touch(stream, now)
        first = len(inherited) + 1
        try:
            self._add(stream, [*inherited, *(StreamEvent(first + i, t, e) for i, (e, t) in enumerate(data))])
        except StoreUnavailableError:
            self._drop(stream_id)
            raise
        if fork is not None:
            source_record = self._streams[fork.source_id].durable
            assert source_record is not None  # noqa: S101 - checked above, in the same call
            source_record.forks += 1
        if close:
            self._close(stream)
        return True, self._durable_of(stream_id, stream)

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
        stream = self._get(stream_id)
        if stream is None or stream.durable is None:
            return DurableAppend("missing")
        record = stream.durable
        if record.deleted:
            return DurableAppend("deleted", stream.last)
        refused = _refusal(
            stream,
            record,
            has_data=bool(data),
            content_type=content_type,
            stream_seq=stream_seq,
            producer=producer,
        )
        if refused is not None:
            return refused
        first = stream.last + 1
        events = [StreamEvent(first + i, text, event) for i, (event, text) in enumerate(data)]
        extra = 0
        if producer is not None and producer.producer_id not in record.producers:
            extra = _EVENT_OVERHEAD + len(producer.producer_id)  # the producer's state, kept with the stream
        self._add(stream, events, extra)
        if producer is not None:
            record.producers[producer.producer_id] = (producer.epoch, producer.seq)
        if stream_seq is not None:
            record.stream_seq = stream_seq
        self._touch(stream, time.monotonic())
        if events:
            stream.notify()
        if close:
            record.closed_by = None if producer is None else producer.tuple_text
            self._close(stream)
        return DurableAppend(
            "appended",
            first + len(events) - 1,
            closed=close,
            producer_epoch=None if producer is None else producer.epoch,
            producer_seq=None if producer is None else producer.seq,
        )

    async def read_durable(
        self,
        stream_id: str,
        position: int,
        *,
        limit: int,
        max_bytes: int | None = None,
        touch: bool = True,
    ) -> tuple[DurableStream | None, list[StreamEvent]]:
        self._purge(time.monotonic())
        stream = self._get(stream_id)
        if stream is None or stream.durable is None:
            return None, []
        if touch:
            self._touch(stream, time.monotonic())
        start = max(position, 0)
        return self._durable_of(stream_id, stream), take_within(
            stream.events[start : start + limit], max_bytes
        )

    async def delete_durable(self, stream_id: str) -> bool:
        stream = self._get(stream_id)
        if stream is None or stream.durable is None or stream.durable.deleted:
            return False
        if stream.durable.forks > 0:
            stream.durable.deleted = True
            return True
        while True:  # the stream, then each source it was the last fork of that was deleted meanwhile
            record = stream.durable
            self._drop(stream_id)
            source_id = record.forked_from if record is not None else None
            source = None if source_id is None else self._get(source_id)
            if source_id is None or source is None or source.durable is None:
                return True
            source.durable.forks -= 1
            if source.durable.forks > 0 or not source.durable.deleted:
                return True
            stream_id, stream = source_id, source

    @staticmethod
    def _touch(stream: _Stream, now: float) -> None:
        """Set a durable stream's expiry after a read or write: its TTL from now, or its fixed time."""
        record = stream.durable
        assert record is not None  # noqa: S101 - only durable streams are touched
        if record.ttl is not None:
            stream.expires_at = now + record.ttl
        elif record.expires_at is not None:
            stream.expires_at = now + (record.expires_at - time.time())

    def _close(self, stream: _Stream) -> None:
        """Close a durable stream: its terminal event (``done``), kept as long as the stream."""
        terminal = StreamEvent.terminal(stream.last + 1, "done")
        stream.events.append(terminal)
        stream.nbytes += terminal.nbytes + _EVENT_OVERHEAD
        self._nbytes += terminal.nbytes + _EVENT_OVERHEAD
        stream.status = "done"
        stream.ended.set()
        stream.notify()

    @staticmethod
    def _durable_of(stream_id: str, stream: _Stream) -> DurableStream:
        record = stream.durable
        assert record is not None  # noqa: S101 - only durable streams are asked for
        return DurableStream(
            stream_id,
            record.name,
            record.content_type,
            stream.status,
            stream.last,
            stream.owner,
            record.ttl,
            record.expires_at,
            record.closed_by,
            record.fork,
            record.deleted,
        )

    @contextlib.asynccontextmanager
    async def watch(self, stream_id: str, *, writing: bool = False) -> AsyncIterator[StreamWatch]:  # noqa: ARG002
        yield _MemoryWatch(self, self._get(stream_id), stream_id)


def _refusal(
    stream: _Stream,
    record: _Durable,
    *,
    has_data: bool,
    content_type: str,
    stream_seq: str | None,
    producer: Producer | None,
) -> DurableAppend | None:
    """Why an append to a durable stream is refused (or is a retry), in the contract's order; None if not."""
    if stream.status != "running":
        tail = stream.last - 1
        if not has_data or (producer is not None and producer.tuple_text == record.closed_by):
            return DurableAppend(
                "duplicate", tail, closed=True, producer_seq=None if producer is None else producer.seq
            )
        return DurableAppend("closed", tail, closed=True)
    if has_data and media_type(content_type) != media_type(record.content_type):
        return DurableAppend("content_type", stream.last)
    if producer is not None:
        refused = _producer_refusal(record.producers.get(producer.producer_id), producer, stream.last)
        if refused is not None:
            return refused
    if (
        stream_seq is not None
        and record.stream_seq is not None
        and stream_seq.encode() <= record.stream_seq.encode()
    ):
        return DurableAppend("stream_seq", stream.last)
    return None


def _producer_refusal(state: tuple[int, int] | None, producer: Producer, tail: int) -> DurableAppend | None:
    """A producer's append against its state ``(epoch, last seq)``: why it is refused, or None."""
    expected = 0  # a new producer starts at 0, in any epoch
    if state is not None:
        epoch, last = state
        if producer.epoch < epoch:
            return DurableAppend("stale_epoch", tail, producer_epoch=epoch)
        if producer.epoch == epoch and producer.seq <= last:
            return DurableAppend("duplicate", tail, producer_epoch=epoch, producer_seq=last)
        if producer.epoch > epoch and producer.seq != 0:
            return DurableAppend("epoch_restart", tail)
        expected = 0 if producer.epoch > epoch else last + 1
    if producer.seq != expected:
        return DurableAppend("seq_gap", tail, producer_seq=expected)
    return None
