"""Producers: a handler's generator run to its end in a task the plugin owns.

The request that starts a generation only creates the stream and follows it like any other reader, so a
client that goes away stops its own reading and nothing else.

Writes are batched without a timer. The generator's items go into a pending list; a writer task stores
everything pending in one ``append`` whenever it runs, and while that write is in flight new items
collect for the next one. A slow generator thus costs one write per item, each sent at once, and a fast
one one write per many items. A generator that gets ``max_batch`` items ahead of the store waits.

The writer also renews the producer's lease while the generator is quiet. Someone else may end the
stream (a cancel on any worker, a reader that found the lease expired): the producer then cancels its
generator, at once when it hears of it through its watch of the stream (the only other writer writes
the terminal event, so the stream growing past what the producer wrote means just that), and at the
latest when its next write or lease renewal is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from litestar_resumable._events import StreamEvent, TerminalStatus, terminal_data

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from litestar_resumable._options import StreamOptions
    from litestar_resumable._store.base import StreamStore

__all__ = ("Producer",)

logger = logging.getLogger("litestar_resumable")

_STORE_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


class _StreamClosedError(Exception):
    """The stream was ended by someone else; the generator's work is no longer wanted."""


class _LimitError(Exception):
    """The generator passed one of the route's limits; its message is ours, fit for clients."""


class Producer:
    """Runs one generation: the handler's async generator, teed into the store."""

    def __init__(
        self,
        store: StreamStore,
        stream_id: str,
        generator: AsyncGenerator[Any, None],
        options: StreamOptions,
        *,
        on_exit: Callable[[Producer], Awaitable[None]],
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.stream_id = stream_id
        self.options = options
        self.owner = owner
        self._generator = generator
        self._encoder = options.format.encoder(stream_id)
        self._on_exit = on_exit
        self._pending: list[StreamEvent] = []
        self._next_position = 1
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._stop_status: TerminalStatus = "cancelled"
        self._closed_elsewhere = False
        self._closing = False
        self._writer_failed = False
        self.task = asyncio.create_task(self._run(), name=f"litestar-resumable producer {stream_id}")

    def stop(self, status: TerminalStatus) -> None:
        """Cancel the generator; the stream ends with ``status`` unless it has ended already."""
        self._stop_status = status
        self.task.cancel()

    async def _run(self) -> None:
        writer = asyncio.create_task(self._write_loop())
        guard = asyncio.create_task(self._watch_for_end())
        try:
            status, message = await self._generate(writer)
            # Store what was yielded before the end, then the terminal event after it.
            self._closing = True
            self._wake.set()
            try:
                await asyncio.wait_for(writer, self.options.lease)
            except _StreamClosedError:
                status = None
            except Exception:
                logger.exception("could not store the last events of stream %s", self.stream_id)
                if status == "done":  # what was yielded is not all stored: the stream is not done
                    status, message = "error", None
            if status is not None:
                await self._finish(status, message)
        finally:
            guard.cancel()
            await asyncio.gather(guard, return_exceptions=True)
            await self._on_exit(self)

    async def _generate(self, writer: asyncio.Task[None]) -> tuple[TerminalStatus | None, str | None]:
        """Run the generator to its end; say how the stream ends (None: someone else ended it)."""
        try:
            self._queue(self._encoder.opening())
            await self._consume(writer)
        except asyncio.CancelledError:
            if self._writer_failed:
                status: TerminalStatus | None = "error"
            else:
                return (None if self._closed_elsewhere else self._stop_status), None
            message = None
        except _StreamClosedError:
            return None, None
        except _LimitError as exc:
            logger.warning("resumable stream %s: %s", self.stream_id, exc)
            status, message = "error", str(exc)
        except Exception as exc:
            logger.exception("resumable stream %s failed", self.stream_id)
            status = "error"
            message = (str(exc) or type(exc).__name__) if self.options.expose_errors else None
        else:
            status, message = "done", None
        self._queue(self._encoder.closing(), limited=False)
        return status, message

    async def _watch_for_end(self) -> None:
        """Cancel the generator as soon as the stream ends while this producer is not ending it."""
        async with self.store.watch(self.stream_id) as watch:
            await watch.ended.wait()
            if not self._closing:
                self._closed_elsewhere = True
                self.task.cancel()

    async def _consume(self, writer: asyncio.Task[None]) -> None:
        """Run the generator, queueing its items for the writer."""
        try:
            async for item in self._generator:
                self._queue(self._encoder.encode(item))
                if len(self._pending) >= self.options.max_batch:
                    self._room.clear()
                    await self._room.wait()
                if writer.done():
                    writer.result()  # the writer ends early only by raising
        finally:
            with contextlib.suppress(Exception):
                await self._generator.aclose()

    def _queue(self, encoded: list[tuple[str | None, str]], *, limited: bool = True) -> None:
        for event, data in encoded:
            if limited:
                self._check_limits(data)
            self._pending.append(StreamEvent(self._next_position, data, event))
            self._next_position += 1
        if encoded:
            self._wake.set()

    def _check_limits(self, data: str) -> None:
        if self._next_position > self.options.max_events:
            raise _LimitError(f"the stream passed max_events ({self.options.max_events})")
        limit = self.options.max_event_bytes
        if len(data) > limit // 4 and len(data.encode()) > limit:  # 4 bytes per character at most
            raise _LimitError(f"an event of {len(data.encode())} bytes passed max_event_bytes ({limit})")

    async def _finish(self, status: TerminalStatus, message: str | None) -> None:
        for delay in (*_STORE_RETRY_DELAYS, None):
            try:
                await self.store.finish(self.stream_id, status, terminal_data(status, message))
            except Exception:
                if delay is None:
                    logger.exception(
                        "could not end stream %s; readers will find it interrupted", self.stream_id
                    )
                    return
                await asyncio.sleep(delay)
            else:
                return

    async def _write_loop(self) -> None:
        try:
            await self._write_batches()
        except _StreamClosedError:
            raise
        except Exception:
            # The store will not take the events: stop the generator now, not at its next yield.
            if not self._closing:
                self._writer_failed = True
                self.task.cancel()
            raise
        finally:
            self._room.set()  # a generator waiting for room must see that the writer has stopped

    async def _write_batches(self) -> None:
        # A ticker, not a timeout per wait: every lease / 3 it wakes the writer, whose write (an empty
        # one if nothing is pending) renews the lease of a generator that is thinking.
        loop = asyncio.get_running_loop()
        renew_every = self.options.lease / 3
        ticker: list[asyncio.TimerHandle] = []

        def tick() -> None:
            self._wake.set()
            ticker[:] = [loop.call_later(renew_every, tick)]

        ticker.append(loop.call_later(renew_every, tick))
        try:
            await self._write_until_closed()
        finally:
            ticker[0].cancel()

    async def _write_until_closed(self) -> None:
        while True:
            if not self._closing:
                await self._wake.wait()
            self._wake.clear()
            batch = self._pending[: self.options.max_batch]
            del self._pending[: len(batch)]
            self._room.set()
            # While running, an empty batch renews the lease of a generator that is thinking.
            if (batch or not self._closing) and not await self._append(batch):
                self._closed_elsewhere = True
                if not self._closing:
                    self.task.cancel()
                raise _StreamClosedError
            if self._closing and not self._pending:
                return

    async def _append(self, batch: list[StreamEvent]) -> bool:
        for delay in (*_STORE_RETRY_DELAYS, None):
            try:
                return await self.store.append(self.stream_id, batch, lease=self.options.lease)
            except Exception:
                if delay is None:
                    raise
                logger.warning("store write for stream %s failed; retrying", self.stream_id, exc_info=True)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover
