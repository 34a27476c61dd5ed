"""The embedded store: everything in this process's memory.

The default when no store is given. It needs no server, so it also serves as the in-process fake for
users' own tests. It is one process only: streams are not shared between workers and do not survive a
restart.

Memory is bounded by ``max_bytes``: the characters of stored data plus a fixed overhead per event.
When a new stream or event would pass it, ended streams are dropped soonest-to-expire first; if running
streams alone fill it, the write is refused with :class:`StoreUnavailableError`. Expired streams are
dropped lazily, at most once a second, when streams are created or read, so the store runs no task of
its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from litestar_resumable._events import TERMINAL_EVENT, StreamEvent, StreamInfo, StreamStatus, TerminalStatus
from litestar_resumable._store.base import StoreUnavailableError, StreamStore, StreamWatch
from litestar_resumable._waiting import wait_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

__all__ = ("MemoryStreamStore",)

_PURGE_INTERVAL = 1.0
_EVENT_OVERHEAD = 64  # bytes of bookkeeping counted per event, so empty events are not free


@dataclass(eq=False)
class _Stream:
    route: str
    key: str | None
    owner: str | None
    ttl: float
    lease_until: float
    expires_at: float
    status: StreamStatus = "running"
    events: list[StreamEvent] = field(default_factory=list)
    nbytes: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class _MemoryWatch(StreamWatch):
    def __init__(self, store: MemoryStreamStore, stream_id: str) -> None:
        super().__init__(store, stream_id)
        self._memory = store
        stream = store._streams.get(stream_id)  # noqa: SLF001 - the watch is part of the store
        if stream is not None:
            self.ended = stream.ended
        else:
            self.ended.set()

    async def wait(self, position: int, timeout: float) -> bool:
        stream = self._memory._streams.get(self._stream_id)  # noqa: SLF001 - the watch is part of the store
        if stream is None:  # gone: nothing will come; the reader learns it at its next lease check
            await asyncio.sleep(timeout)
            return False
        if stream.events and stream.events[-1].position > position:
            return True
        return await wait_event(stream.changed, timeout)


class MemoryStreamStore(StreamStore):
    """Keep streams in this process's memory (one worker; lost on restart)."""

    def __init__(self, *, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._streams: dict[str, _Stream] = {}
        self._keys: dict[str, tuple[str, float]] = {}
        self._nbytes = 0
        self._next_purge = 0.0

    @property
    def used_bytes(self) -> int:
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
        stream.ended.set()
        stream.notify()

    def _purge(self, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + _PURGE_INTERVAL
        for stream_id in [sid for sid, s in self._streams.items() if s.expires_at <= now]:
            self._drop(stream_id)
        for key in [k for k, (_, expires) in self._keys.items() if expires <= now]:
            del self._keys[key]

    def _reserve(self, nbytes: int) -> None:
        """Make room for ``nbytes`` more, dropping ended streams, or refuse."""
        if self._nbytes + nbytes <= self.max_bytes:
            return
        self._purge(time.monotonic())
        ended = sorted((s.expires_at, sid) for sid, s in self._streams.items() if s.status != "running")
        for _, stream_id in ended:
            if self._nbytes + nbytes <= self.max_bytes:
                return
            self._drop(stream_id)
        if self._nbytes + nbytes > self.max_bytes:
            raise StoreUnavailableError(
                f"MemoryStreamStore is full ({self.max_bytes} bytes of running streams)"
            )

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
        now = time.monotonic()
        self._purge(now)
        if stream_id in self._streams:
            raise ValueError(f"stream {stream_id} exists already")
        self._reserve(_EVENT_OVERHEAD)
        self._streams[stream_id] = _Stream(
            route=route,
            key=key,
            owner=owner,
            ttl=ttl,
            lease_until=now + lease,
            expires_at=now + lease + ttl,
            nbytes=_EVENT_OVERHEAD,
        )
        self._nbytes += _EVENT_OVERHEAD

    async def append(self, stream_id: str, events: Sequence[StreamEvent], *, lease: float) -> bool:
        stream = self._get(stream_id)
        if stream is None or stream.status != "running":
            return False
        expected = stream.events[-1].position + 1 if stream.events else 1
        if events and events[-1].position == expected - 1:
            events = []  # a retry of a batch that is stored already (as the Redis store does)
        if events and events[0].position != expected:
            raise ValueError(f"append at position {events[0].position}, expected {expected}")
        nbytes = sum(len(e.data) + _EVENT_OVERHEAD for e in events)
        self._reserve(nbytes)
        stream.events.extend(events)
        stream.nbytes += nbytes
        self._nbytes += nbytes
        now = time.monotonic()
        stream.lease_until = now + lease
        stream.expires_at = now + lease + stream.ttl
        if events:
            stream.notify()
        return True

    async def finish(
        self,
        stream_id: str,
        status: TerminalStatus,
        data: str,
        *,
        only_if_lease_expired: bool = False,
    ) -> StreamInfo | None:
        stream = self._get(stream_id)
        if stream is None:
            return None
        now = time.monotonic()
        if stream.status == "running" and not (only_if_lease_expired and stream.lease_until > now):
            position = stream.events[-1].position + 1 if stream.events else 1
            stream.events.append(StreamEvent(position, data, TERMINAL_EVENT))
            stream.nbytes += len(data) + _EVENT_OVERHEAD
            self._nbytes += len(data) + _EVENT_OVERHEAD
            stream.status = status
            stream.expires_at = now + stream.ttl
            stream.ended.set()
            stream.notify()
        return self._info(stream_id, stream)

    async def read_after(self, stream_id: str, position: int, *, limit: int) -> list[StreamEvent]:
        stream = self._get(stream_id)
        if stream is None:
            return []
        # Positions are consecutive from 1, so the event after position p is at index p.
        start = max(position, 0)
        return stream.events[start : start + limit]

    async def info(self, stream_id: str) -> StreamInfo | None:
        self._purge(time.monotonic())
        stream = self._get(stream_id)
        return None if stream is None else self._info(stream_id, stream)

    @staticmethod
    def _info(stream_id: str, stream: _Stream) -> StreamInfo:
        last = stream.events[-1].position if stream.events else 0
        return StreamInfo(stream_id, stream.status, last, stream.route, stream.key, stream.owner)

    async def get_key(self, key: str) -> str | None:
        entry = self._keys.get(key)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    async def compare_and_set_key(
        self, key: str, expected: str | None, new: str | None, *, ttl: float
    ) -> bool:
        if await self.get_key(key) != expected:
            return False
        if new is None:
            self._keys.pop(key, None)
        else:
            self._keys[key] = (new, time.monotonic() + ttl)
        return True

    @contextlib.asynccontextmanager
    async def watch(self, stream_id: str) -> AsyncIterator[StreamWatch]:
        yield _MemoryWatch(self, stream_id)
