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
Their methods are in ``_memory_durable``; the record of a stream (durable or not) in ``_memory_records``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from litestar_resumable._errors import KeyConflictError, StoreUnavailableError, StreamExistsError
from litestar_resumable._events import StreamEvent, StreamInfo, TerminalStatus
from litestar_resumable._store._memory_durable import MemoryDurableStreams
from litestar_resumable._store._memory_records import EVENT_OVERHEAD, Stream
from litestar_resumable._store.base import StreamWatch, take_within

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from litestar_resumable._options import ConflictPolicy

__all__ = ("MemoryStreamStore",)

_PURGE_INTERVAL = 1.0


class _MemoryWatch(StreamWatch):
    def __init__(self, store: MemoryStreamStore, stream: Stream | None, stream_id: str) -> None:
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


class MemoryStreamStore(MemoryDurableStreams):
    """Keep streams in this process's memory (one worker; lost on restart)."""

    def __init__(self, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._streams: dict[str, Stream] = {}
        self._keys: dict[str, str] = {}
        self._names: dict[str, str] = {}  # durable streams: name -> stream id
        self._counters: dict[str, dict[str, float]] = {}  # counter -> member -> when it expires
        self._nbytes = 0
        self._next_purge = 0.0

    @property
    def used_bytes(self) -> int:
        """Bytes counted against ``max_bytes`` now."""
        return self._nbytes

    def _get(self, stream_id: str) -> Stream | None:
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

    def _add(self, stream: Stream, events: Sequence[StreamEvent], extra: int = 0) -> None:
        nbytes = sum(event.nbytes + EVENT_OVERHEAD for event in events) + extra
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
        self._reserve(EVENT_OVERHEAD)
        self._streams[stream_id] = Stream(
            route=route,
            key=key,
            owner=owner,
            format=format,
            ttl=ttl,
            lease=lease,
            lease_until=now + lease,
            expires_at=now + lease + ttl,
            claimed=claimed,
            nbytes=EVENT_OVERHEAD,
        )
        self._nbytes += EVENT_OVERHEAD
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

    def _end(self, stream_id: str, stream: Stream, status: TerminalStatus, message: str | None) -> None:
        # The terminal event is always stored, even in a full store: a stream must be able to end.
        terminal = StreamEvent.terminal(stream.last + 1, status, message)
        stream.events.append(terminal)
        stream.nbytes += terminal.nbytes + EVENT_OVERHEAD
        self._nbytes += terminal.nbytes + EVENT_OVERHEAD
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
    def _info(stream_id: str, stream: Stream) -> StreamInfo:
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

    @contextlib.asynccontextmanager
    async def watch(self, stream_id: str, *, writing: bool = False) -> AsyncIterator[StreamWatch]:  # noqa: ARG002
        yield _MemoryWatch(self, self._get(stream_id), stream_id)
