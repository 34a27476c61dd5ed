"""The write path of a stream: items in, batches to the store, the lease kept, an end elsewhere noticed.

Every writer of a stream goes through :class:`StreamWriter`: the producer of a ``@resumable`` route does.

Writes are batched without a timer. ``write`` encodes an item into pending events; a flusher task stores
everything pending in one ``append`` whenever it runs, and while that write is in flight new events
collect for the next one. A slow writer thus costs one store write per item, each sent at once, and a
fast one one write per many items. A writer that gets ``max_batch_bytes`` ahead of the store waits, so a
writer holds at most twice that many bytes (one batch in flight, one pending), or one event more.

The flusher also renews the lease: a ticker wakes it every ``lease / 3`` seconds without a write, and it
writes an empty batch. Someone else may end the stream (a cancel on any worker, a reader that found the
lease expired): a guard task hears of it through its watch of the stream (the only other writer writes
the terminal event, so the stream ending means just that), and the next append is refused in any case.
Either way the writer reports it once, through ``on_closed``, and ``write`` raises from then on.

Store calls that fail because the store is out of reach are retried for ``store_retry_for`` seconds;
any other failure (a position the store does not expect, say) is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any, Literal

from litestar_resumable._errors import StoreUnavailableError, StreamClosedError, StreamLimitError
from litestar_resumable._events import StreamEvent, TerminalStatus
from litestar_resumable._waiting import Wakeup, retrying

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar_resumable._format import Encoded
    from litestar_resumable._options import StreamOptions
    from litestar_resumable._store.base import StreamStore

__all__ = ("Closed", "StreamWriter")

logger = logging.getLogger("litestar_resumable")

Closed = Literal["ended elsewhere", "store failed", "store lost events"]
"""Why a writer stopped before it was closed: the stream was ended by someone else, the store failed, or
the store no longer has events it took (a Redis failover with asynchronous replication, say)."""


class StreamWriter:
    """Writes one running stream with the options of its route."""

    def __init__(
        self,
        store: StreamStore,
        stream_id: str,
        options: StreamOptions,
        *,
        on_closed: Callable[[Closed], None] | None = None,
    ) -> None:
        self.store = store
        self.stream_id = stream_id
        self.options = options
        self.events = 0
        """Events stored so far (the terminal one not counted)."""
        self.bytes = 0
        """UTF-8 bytes of the data of the events stored so far."""
        self.closed: Closed | None = None
        self._on_closed = on_closed
        self._encoder = options.format.encoder(stream_id)
        self._pending: list[StreamEvent] = []
        self._pending_bytes = 0
        self._next_position = 1
        self._wake = Wakeup()
        self._room = asyncio.Event()
        self._draining = False
        self._stopped = False
        self._wrote_since_tick = False
        self._flusher: asyncio.Task[None] | None = None
        self._guard: asyncio.Task[None] | None = None
        self._ticker: asyncio.TimerHandle | None = None

    # -- the writer's side --

    def start(self) -> None:
        """Store the format's opening events and start the flusher, the guard and the lease ticker."""
        self._queue(self._encoder.opening(), limited=False)
        self._flusher = asyncio.create_task(self._flush(), name=f"litestar-resumable flush {self.stream_id}")
        self._guard = asyncio.create_task(
            self._watch_for_end(), name=f"litestar-resumable guard {self.stream_id}"
        )
        self._tick()

    async def write(self, item: Any) -> None:
        """Queue one item's events; wait while ``max_batch_bytes`` are pending.

        Raises :class:`StreamLimitError` past a limit, :class:`StreamClosedError` once the stream has ended
        elsewhere, :class:`StoreUnavailableError` once the store has failed.
        """
        self._raise_if_closed()
        self._queue(self._encoder.encode(item), limited=True)
        while self._pending_bytes >= self.options.max_batch_bytes and self.closed is None:
            self._room.clear()
            await self._room.wait()
        self._raise_if_closed()

    async def drain(self, *, closing: bool) -> bool:
        """Store everything pending (with the format's closing events if ``closing``) and stop the flusher.

        True if all of it is stored; False if the stream ended elsewhere or the store failed.
        """
        if closing and self.closed is None:
            self._queue(self._encoder.closing(), limited=False)
        self._draining = True
        self._wake.set()
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        return self.closed is None

    async def finish(self, status: TerminalStatus, message: str | None) -> None:
        """Write the terminal event (unless the stream ended elsewhere) and stop the guard and the ticker."""
        try:
            if self.closed != "ended elsewhere":
                await retrying(
                    functools.partial(self.store.finish, self.stream_id, status, message=message),
                    self.options.store_retry_for,
                    f"ending stream {self.stream_id}",
                )
        except StoreUnavailableError:
            logger.exception("could not end stream %s; readers will find it interrupted", self.stream_id)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop the writer's tasks without writing anything more."""
        if self._ticker is not None:
            self._ticker.cancel()
        for task in (self._flusher, self._guard):
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(
            *(t for t in (self._flusher, self._guard) if t is not None), return_exceptions=True
        )

    # -- inside --

    def _raise_if_closed(self) -> None:
        if self.closed == "ended elsewhere":
            raise StreamClosedError(f"stream {self.stream_id} has ended")
        if self.closed is not None:
            raise StoreUnavailableError(f"the store did not keep the events of stream {self.stream_id}")

    def _close(self, why: Closed) -> None:
        if self.closed is None:
            self.closed = why
            self._room.set()  # a writer waiting for room must see it
            if self._on_closed is not None:
                self._on_closed(why)

    def _queue(self, encoded: Encoded, *, limited: bool) -> None:
        for event, data in encoded:
            stored = StreamEvent(self._next_position, data, event)
            if limited:
                self._check_limits(stored)
            self._pending.append(stored)
            self._pending_bytes += stored.nbytes
            self._next_position += 1
        if encoded:
            self._wake.set()

    def _check_limits(self, event: StreamEvent) -> None:
        if event.position > self.options.max_events:
            raise StreamLimitError(f"the stream passed max_events ({self.options.max_events})")
        if event.nbytes > self.options.max_event_bytes:
            raise StreamLimitError(
                f"an event of {event.nbytes} bytes passed max_event_bytes ({self.options.max_event_bytes})"
            )

    def _tick(self) -> None:
        # A ticker, not a timeout per wait: every lease / 3 without a write it wakes the flusher, whose
        # empty write renews the lease of a writer that is thinking.
        if not self._wrote_since_tick:
            self._wake.set()
        self._wrote_since_tick = False
        self._ticker = asyncio.get_running_loop().call_later(self.options.lease / 3, self._tick)

    def _take_batch(self) -> list[StreamEvent]:
        taken, size = 0, 0
        for event in self._pending:
            if taken and size + event.nbytes > self.options.max_batch_bytes:
                break
            taken += 1
            size += event.nbytes
        batch = self._pending[:taken]
        del self._pending[:taken]
        self._pending_bytes -= size
        self._room.set()
        return batch

    async def _flush(self) -> None:
        try:
            while True:
                if not self._draining:
                    await self._wake.wait()
                self._wake.clear()
                if self._stopped:
                    return
                batch = self._take_batch()
                if batch or not self._draining:
                    try:
                        stored = await self.store.append(self.stream_id, batch, lease=self.options.lease)
                    except StoreUnavailableError:  # retried; the first try stays a frame short
                        stored = await retrying(
                            functools.partial(
                                self.store.append, self.stream_id, batch, lease=self.options.lease
                            ),
                            self.options.store_retry_for,
                            f"writing stream {self.stream_id}",
                        )
                    if not stored:
                        self._close("ended elsewhere")
                        return
                    self._wrote_since_tick = True
                    self.events += len(batch)
                    self.bytes += sum(event.nbytes for event in batch)
                if self._draining and not self._pending:
                    return
        except ValueError:
            # The store expects another position: it lost (or never had) events it acknowledged.
            logger.exception("stream %s: the store does not have the events it took", self.stream_id)
            self._close("store lost events")
        except Exception:
            logger.exception("the store did not take the events of stream %s", self.stream_id)
            self._close("store failed")

    async def _watch_for_end(self) -> None:
        with contextlib.suppress(StoreUnavailableError):
            async with self.store.watch(self.stream_id, writing=True) as watch:
                await watch.ended.wait()
                if not self._draining:
                    self._close("ended elsewhere")
