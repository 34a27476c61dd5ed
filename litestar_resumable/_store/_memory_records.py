"""The embedded store's records: :class:`Stream`, a stream in memory (durable or not), its durable part.

``memory`` keeps a table of :class:`Stream`; a durable stream's protocol state is its :class:`Durable`
(``_memory_durable``). ``EVENT_OVERHEAD`` is what both count per event against ``max_bytes``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from litestar_resumable._events import StreamEvent, StreamStatus
from litestar_resumable._waiting import Signal

__all__ = ("EVENT_OVERHEAD", "Durable", "Stream")

EVENT_OVERHEAD = 64  # bytes of bookkeeping counted per event, so empty events are not free


@dataclass(eq=False)
class Durable:
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
class Stream:
    """A stream in the embedded store; ``durable`` is the record of a durable one."""

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
    durable: Durable | None = None

    @property
    def last(self) -> int:
        return self.events[-1].position if self.events else 0

    def notify(self) -> None:
        self.changed.fire()
