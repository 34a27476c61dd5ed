"""The store base class: what the plugin needs from a place that keeps streams.

A store keeps, per stream id: the events by position (1, 2, 3, ...), a status, the route and key the
stream was started for, a producer lease, and an expiry. It also keeps a small registry from keys
(chat ids, say) to the stream that is active for them.

Every write that must not tear is one store call: ``append`` checks the stream is still running, stores
the events and renews the lease; ``finish`` writes the terminal event and the final status unless the
stream has already ended. So a cancel on one worker, a lease expiry noticed on another and the producer's
own last write can race, and exactly one terminal event wins.

Positions are given by the producer (it is the only writer of ordinary events); the terminal event takes
the position after the last one, whoever writes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from litestar_resumable._events import terminal_data

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from litestar_resumable._events import StreamEvent, StreamInfo, TerminalStatus

__all__ = ("StoreUnavailableError", "StreamStore", "StreamWatch")


class StoreUnavailableError(RuntimeError):
    """The store cannot take this write now (full, or its backend is out of reach)."""


class StreamWatch:
    """A handle that lets a reader sleep until a stream may have grown.

    This default polls; stores with a way to hear about new events override ``wait``. A store may hand
    one watch to all readers of a stream in a process; then ``interrupt_if_abandoned`` asks the store
    once for all of them.
    """

    def __init__(self, store: StreamStore, stream_id: str, poll_interval: float = 0.25) -> None:
        self._store = store
        self._stream_id = stream_id
        self._poll_interval = poll_interval
        self._checked_at = -math.inf
        self._check: asyncio.Future[StreamInfo | None] | None = None
        self.ended = asyncio.Event()
        """Set once this watch has seen the stream end (its terminal event, or the stream gone)."""

    async def wait(self, position: int, timeout: float) -> bool:
        """Return True once there may be events after ``position``, False after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            info = await self._store.info(self._stream_id)
            if info is None or not info.is_running:
                self.ended.set()
            if info is not None and info.last_position > position:
                return True
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.sleep(min(self._poll_interval, remaining))

    async def interrupt_if_abandoned(self, min_interval: float) -> StreamInfo | None:
        """End the stream as ``interrupted`` if its producer's lease ran out; return its info (None: gone).

        Asks the store at most once per ``min_interval`` seconds, whatever the number of readers.
        """
        now = asyncio.get_running_loop().time()
        if self._check is None or (self._check.done() and now - self._checked_at >= min_interval):
            self._checked_at = now
            self._check = asyncio.ensure_future(
                self._store.finish(
                    self._stream_id, "interrupted", terminal_data("interrupted"), only_if_lease_expired=True
                )
            )
        # Readers that ask while the check runs wait for its answer; one reader leaving does not cancel it.
        return await asyncio.shield(self._check)


class StreamStore(ABC):
    """Where resumable streams live. Subclass it to keep streams somewhere else."""

    @abstractmethod
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
        """Record a new, empty, running stream whose producer holds a lease of ``lease`` seconds.

        A running stream expires ``lease + ttl`` seconds after its last write; an ended one ``ttl``
        seconds after it ended.
        """

    @abstractmethod
    async def append(self, stream_id: str, events: Sequence[StreamEvent], *, lease: float) -> bool:
        """Store events and renew the lease; False, storing nothing, if the stream is not running.

        A batch that ends at the stream's last position is a retry of a write whose answer was lost: it
        is stored already, so it only renews the lease.
        """

    @abstractmethod
    async def finish(
        self,
        stream_id: str,
        status: TerminalStatus,
        data: str,
        *,
        only_if_lease_expired: bool = False,
    ) -> StreamInfo | None:
        """End a running stream with a terminal event; return the stream's info afterwards, None if unknown.

        The stream then expires ``ttl`` seconds (as given to ``create``) from now.
        """

    @abstractmethod
    async def read_after(self, stream_id: str, position: int, *, limit: int) -> list[StreamEvent]:
        """Return up to ``limit`` stored events after ``position``, in order."""

    @abstractmethod
    async def info(self, stream_id: str) -> StreamInfo | None:
        """Return what is known about a stream, or None if it is unknown or expired."""

    @abstractmethod
    async def get_key(self, key: str) -> str | None:
        """Return the stream id registered for ``key``."""

    @abstractmethod
    async def compare_and_set_key(
        self, key: str, expected: str | None, new: str | None, *, ttl: float
    ) -> bool:
        """Point ``key`` at ``new`` (None removes it) if it now points at ``expected``; True if it did."""

    @contextlib.asynccontextmanager
    async def watch(self, stream_id: str) -> AsyncIterator[StreamWatch]:
        """Watch a stream for new events for as long as the context is open."""
        yield StreamWatch(self, stream_id)

    async def close(self) -> None:  # noqa: B027 - an optional hook: most stores hold nothing to release
        """Release what the store holds (connections, tasks). The plugin calls it at shutdown."""
