"""The store base class: what the plugin needs from a place that keeps streams.

A store keeps, per stream id: the events by position (1, 2, 3, ...), a status, the route, key, owner and
format the stream was started with, a producer lease, and an expiry. It also keeps, per key (a chat id,
say), which stream was last started for it.

Every write that must not tear is one store call:

- ``create`` records a running stream and, for a keyed stream, makes it the key's stream in the same
  step, ending the key's running stream (``cancelled``, or ``interrupted`` if its lease ran out) or
  refusing (:class:`KeyConflictError`). So at any moment at most one stream of a key is running, across
  every worker that shares the store.
- ``append`` checks that the stream is still running, stores the events and renews the lease;
- ``finish`` writes the terminal event and the final status unless the stream has already ended, and
  releases the key.

So a cancel on one worker, a lease expiry noticed on another and the producer's own last write can race,
and exactly one terminal event wins.

Positions are given by the producer (it is the only writer of ordinary events); the terminal event takes
the position after the last one, whoever writes it (see :meth:`StreamEvent.terminal`).

A store may also keep streams written over the Durable Streams protocol
(``litestar_resumable.durable_streams``): streams with a name, a content type and an expiry of their own,
written by any number of HTTP clients. Their positions are given by the store, and the protocol's writer
state (``Stream-Seq``, idempotent producers, the closing request) is checked and kept in the same atomic
call as the append. They hold ordinary events, so watches, ``read_after`` and ``info`` work on them as on
any stream, and the SSE path knows nothing of them. Those methods raise ``NotImplementedError`` here; what
they take and answer is in ``durable_types``.

``litestar_resumable.testing.StoreContract`` is the test suite every store passes; run it over yours.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from litestar_resumable._events import StreamEvent, StreamInfo, TerminalStatus
    from litestar_resumable._options import ConflictPolicy
    from litestar_resumable._store.durable_types import DurableAppend, DurableStream, Fork, Producer

__all__ = ("StreamStore", "StreamWatch", "take_within")


def take_within(events: Sequence[StreamEvent], max_bytes: int | None) -> list[StreamEvent]:
    """The longest prefix of ``events`` whose data fits ``max_bytes`` (at least one event)."""
    if max_bytes is None:
        return list(events)
    taken: list[StreamEvent] = []
    used = 0
    for event in events:
        used += event.nbytes
        if used > max_bytes and taken:
            break
        taken.append(event)
    return taken


class StreamWatch:
    """A handle that lets a reader sleep until a stream may have grown.

    This default polls; stores with a way to hear about new events override ``wait``. A store may hand
    one watch to all readers of a stream in a process; then ``interrupt_if_abandoned`` asks the store
    once for all of them.
    """

    def __init__(self, store: StreamStore, stream_id: str, poll_interval: float = 0.25) -> None:
        self.store = store
        self.stream_id = stream_id
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
            info = await self.store.info(self.stream_id)
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
                self.store.finish(self.stream_id, "interrupted", only_if_lease_expired=True)
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
        lease: float,
        ttl: float,
        key: str | None = None,
        owner: str | None = None,
        format: str = "sse",  # noqa: A002 - the stream's format name, as StreamInfo calls it
        on_conflict: ConflictPolicy = "cancel",
        claimed: bool = True,
    ) -> str | None:
        """Record a new, empty, running stream whose writer holds a lease of ``lease`` seconds.

        With ``claimed=False`` no writer holds it yet: one takes it over with :meth:`claim` (a job queue's
        worker, say); if none does within the lease, readers end it ``interrupted`` as they would a writer
        that died.

        A running stream expires ``lease + ttl`` seconds after its last write; an ended one ``ttl``
        seconds after it ended. With ``key``, the stream becomes the key's stream in the same atomic
        step: a running stream of the key whose lease holds is ended ``cancelled`` and its id returned
        (with ``on_conflict="reject"``, :class:`KeyConflictError` is raised instead and nothing changes);
        one whose lease ran out is ended ``interrupted``. Raises :class:`StreamExistsError` if the id is
        taken. Returns None when no running stream was cancelled.
        """

    @abstractmethod
    async def claim(self, stream_id: str) -> bool:
        """Take over writing a stream created with ``claimed=False``, renewing its lease: True if taken.

        False, changing nothing, if it has ended, another writer took it, or its lease ran out unclaimed.
        Atomic, so of writers claiming one stream at once exactly one gets it.
        """

    @abstractmethod
    async def append(self, stream_id: str, events: Sequence[StreamEvent], *, lease: float) -> bool:
        """Store events and renew the lease; False, storing nothing, if the stream is not running.

        A batch that ends at the stream's last position is a retry of a write whose answer was lost: it
        is stored already, so it only renews the lease. A batch that does not start right after the last
        position raises ``ValueError``.
        """

    @abstractmethod
    async def finish(
        self,
        stream_id: str,
        status: TerminalStatus,
        *,
        message: str | None = None,
        only_if_lease_expired: bool = False,
    ) -> StreamInfo | None:
        """End a running stream with its terminal event; return its info afterwards, None if unknown.

        The terminal event is :meth:`StreamEvent.terminal` at the position after the last. The stream then
        expires ``ttl`` seconds (as given to ``create``) from now, and its key, if it still names this
        stream, names none.
        """

    @abstractmethod
    async def read_after(
        self, stream_id: str, position: int, *, limit: int, max_bytes: int | None = None
    ) -> list[StreamEvent]:
        """Return up to ``limit`` stored events after ``position``, in order.

        With ``max_bytes``, stop before the event that would take the data past it (but return one event
        at least), so a reader's memory is bounded in bytes whatever the size of the events.
        """

    @abstractmethod
    async def info(self, stream_id: str) -> StreamInfo | None:
        """Return what is known about a stream, or None if it is unknown or expired."""

    @abstractmethod
    async def key_holder(self, key: str) -> str | None:
        """The id of the stream last started for ``key`` while it runs (or until its record expires)."""

    # -- counters, for limits shared by every worker (ResumablePlugin(shared_limits=True)) --

    async def take_slot(self, counter: str, member: str, limit: int, *, ttl: float) -> bool:
        """Count ``member`` in ``counter`` for ``ttl`` seconds if it has fewer than ``limit`` members (or
        counts it already: then renew it); False, counting nothing, if it is full. Atomic."""
        raise NotImplementedError(f"{type(self).__name__} does not keep counters (shared limits)")

    async def renew_slots(self, counter: str, members: Sequence[str], *, ttl: float) -> None:
        """Count ``members`` (those still counted) for ``ttl`` seconds more."""
        raise NotImplementedError(f"{type(self).__name__} does not keep counters (shared limits)")

    async def drop_slot(self, counter: str, member: str) -> None:
        """Stop counting ``member`` in ``counter``."""
        raise NotImplementedError(f"{type(self).__name__} does not keep counters (shared limits)")

    # -- streams written over the Durable Streams protocol (litestar_resumable.durable_streams) --

    async def durable_id(self, name: str) -> str | None:
        """The id of the durable stream named ``name``, or None if there is none (or it expired)."""
        raise NotImplementedError(f"{type(self).__name__} does not keep durable streams")

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
        """Create a durable stream named ``name`` with id ``stream_id``, its first events ``data`` (``(event
        name, data)`` pairs at positions 1, 2, ...) and, with ``close``, closed at once; atomically, unless
        a stream of that name exists: then change nothing. Return whether it was created, and the stream
        of that name (to compare with what was asked).

        It expires ``ttl`` seconds after its last read or write, or at ``expires_at`` (Unix time), or
        never; a running one is never ended by lease checks (it has no producer that could die).

        With ``fork``, the stream starts with a copy of the source's first ``fork.position`` events (at the
        same positions; ``data`` follows them), and the source counts it among its forks: deleting the
        source then keeps it, marked deleted, until its last fork is deleted. ``ValueError`` if the source
        is gone, deleted, or shorter; :class:`StreamLimitError` if the copy is larger than the store takes.
        """
        raise NotImplementedError(f"{type(self).__name__} does not keep durable streams")

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
        """Append ``data`` (``(event name, data)`` pairs) at the next positions and, with ``close``, close the
        stream after them, in one atomic step that checks, in this order: the stream exists; it is open
        (a close without data of a closed stream succeeds, and so does the retry of the producer's
        append that closed it); its content type is ``content_type``; the producer's epoch and sequence
        number (a retry is a ``duplicate`` and changes nothing); ``stream_seq`` is greater, byte by byte,
        than the last one given. Renews a TTL.
        """
        raise NotImplementedError(f"{type(self).__name__} does not keep durable streams")

    async def read_durable(
        self,
        stream_id: str,
        position: int,
        *,
        limit: int,
        max_bytes: int | None = None,
        touch: bool = True,
    ) -> tuple[DurableStream | None, list[StreamEvent]]:
        """The durable stream and up to ``limit`` events after ``position`` (as :meth:`read_after`), read
        together; with ``touch``, a read that renews the stream's TTL. None if there is no such stream."""
        raise NotImplementedError(f"{type(self).__name__} does not keep durable streams")

    async def delete_durable(self, stream_id: str) -> bool:
        """Delete a durable stream, its events and its name; False if there was none (or it is deleted).

        A stream that streams forked from it still count is only marked deleted; it goes with the last of
        them. Deleting a fork deletes, in turn, its source if that was its last fork and it was marked.
        """
        raise NotImplementedError(f"{type(self).__name__} does not keep durable streams")

    @contextlib.asynccontextmanager
    async def watch(
        self,
        stream_id: str,
        *,
        writing: bool = False,  # noqa: ARG002 - a hint this polling default has no use for
    ) -> AsyncIterator[StreamWatch]:
        """Watch a stream for new events for as long as the context is open.

        ``writing``: the caller writes the stream from this process, and watches it for its end; a store
        may then spare it the news of its own writes.
        """
        yield StreamWatch(self, stream_id)

    async def close(self) -> None:  # noqa: B027 - an optional hook: most stores hold nothing to release
        """Release what the store holds (connections, tasks). The plugin calls it at shutdown."""
