"""The streams the Durable Streams routes read, and what one read of them finds.

A :class:`Source` is a durable stream (:class:`DurableSource`: read, written and deleted by any client) or
a ``@resumable`` route's stream (:class:`ResumableSource`: read-only, a JSON stream of its events, closed
by its terminal event, ended as interrupted if its producer died). Its :meth:`Source.read` is one store
call, answered as a :class:`Read`.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from litestar_resumable._durable import (
    JSON_TYPE,
    NOW,
    START,
    ProtocolError,
    body_of,
    is_data,
    resumable_body,
    resumable_status,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar_resumable._events import StreamEvent
    from litestar_resumable._store.base import StreamStore, StreamWatch


@dataclass
class Read:
    """One read of a stream: its data events after a position, and where that leaves the reader."""

    content_type: str
    position: int
    events: list[StreamEvent]
    tail: int
    """The stream's newest data position when read."""
    closed: bool
    status: str | None = None
    """The ending of a ``@resumable`` stream, once closed."""
    ttl: int | None = None
    expires_at: float | None = None

    @property
    def end(self) -> int:
        """Where the reader is after this read: the next offset's position."""
        return self.events[-1].position if self.events else self.position

    @property
    def up_to_date(self) -> bool:
        return self.end >= self.tail

    @property
    def at_eof(self) -> bool:
        """The read reaches the end of a closed stream."""
        return self.closed and self.up_to_date


class Source:
    """A stream the routes read: a durable stream, or a ``@resumable`` stream (read-only)."""

    check_interval = math.inf
    """Seconds between checks that the stream's producer lives (``@resumable`` streams only)."""

    def __init__(self, store: StreamStore, stream_id: str) -> None:
        self.store = store
        self.stream_id = stream_id

    async def read(self, offset: int, *, limit: int, max_bytes: int, touch: bool) -> Read | None:
        """The data after ``offset`` (a position, :data:`START` or :data:`NOW`); None if gone; 400 if
        ``offset`` is beyond the stream's end."""
        raise NotImplementedError

    def body(self, content_type: str, events: Sequence[StreamEvent]) -> bytes:
        raise NotImplementedError

    async def check(self, watch: StreamWatch) -> None:
        """End the stream as interrupted if its producer died (``@resumable`` streams)."""


class DurableSource(Source):
    async def read(self, offset: int, *, limit: int, max_bytes: int, touch: bool) -> Read | None:
        position = 0 if offset in (START, NOW) else offset
        state, events = await self.store.read_durable(
            self.stream_id, position, limit=0 if offset == NOW else limit, max_bytes=max_bytes, touch=touch
        )
        if state is None:
            return None
        if state.deleted:
            raise ProtocolError(410, "the stream was deleted (it is kept for the streams forked from it)")
        if offset == NOW:
            position = state.tail
        elif position > state.tail:
            raise ProtocolError(400, "the offset is beyond the end of the stream")
        data = [event for event in events if is_data(event) and event.position <= state.tail]
        return Read(
            state.content_type,
            position,
            data,
            state.tail,
            state.closed,
            ttl=state.ttl,
            expires_at=state.expires_at,
        )

    def body(self, content_type: str, events: Sequence[StreamEvent]) -> bytes:
        return body_of(events, content_type)


class ResumableSource(Source):
    def __init__(self, store: StreamStore, stream_id: str, lease: float) -> None:
        super().__init__(store, stream_id)
        self.check_interval = lease / 2
        self._checked_at = -math.inf

    async def read(self, offset: int, *, limit: int, max_bytes: int, touch: bool) -> Read | None:  # noqa: ARG002 - no TTL to renew
        info = await self.store.info(self.stream_id)
        if info is None:
            return None
        tail = info.last_position if info.is_running else info.last_position - 1
        position = tail if offset == NOW else max(offset, 0)
        if position > tail:
            raise ProtocolError(400, "the offset is beyond the end of the stream")
        # One event at least: the read at a closed stream's tail finds its terminal event (and status).
        events = await self.store.read_after(
            self.stream_id, position, limit=1 if offset == NOW else max(limit, 1), max_bytes=max_bytes
        )
        terminal = events[-1] if events and not is_data(events[-1]) else None
        if terminal is not None:
            tail = terminal.position - 1
        data = [] if offset == NOW else [event for event in events if is_data(event)]
        status = None if terminal is None else resumable_status(terminal)
        return Read(JSON_TYPE, position, data, tail, terminal is not None or not info.is_running, status)

    def body(self, content_type: str, events: Sequence[StreamEvent]) -> bytes:  # noqa: ARG002 - always JSON
        return resumable_body(events)

    async def check(self, watch: StreamWatch) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._checked_at >= self.check_interval:
            self._checked_at = now
            await watch.interrupt_if_abandoned(self.check_interval)
