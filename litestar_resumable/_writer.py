"""The write path of a stream: items in, batches to the store, the lease kept, an end elsewhere noticed.

Every writer of a stream is a :class:`StreamWriter`: the producer of a ``@resumable`` route, and a job
queue's worker writing a stream the web tier opened (``ResumablePlugin.open_stream``):

    async with StreamWriter(store, stream_id) as writer:
        async for delta in model(prompt):
            await writer.write(delta)

Writes are batched without a timer. ``write`` encodes an item into pending events; a flusher task stores
everything pending in one ``append`` whenever it runs, and while that write is in flight new events
collect for the next one. A slow writer thus costs one store write per item, each sent at once, and a
fast one one write per many items. A writer that has ``max_batch_bytes`` pending waits, so it holds one
batch in flight and at most ``max_batch_bytes`` plus one event more pending.

The flusher also renews the lease: a ticker wakes it every ``lease / 3`` seconds without a write, and it
writes an empty batch. Someone else may end the stream (a cancel on any worker, a reader that found the
lease expired): a guard task hears of it through its watch of the stream, and the next append is refused
in any case. Either way the writer reports it once (``on_closed``; ``cancelled`` and ``wait_cancelled``
for a worker's code), and ``write`` raises :class:`StreamClosedError` from then on.

Store calls that fail because the store is out of reach are retried for ``store_retry_for`` seconds;
any other failure (a position the store does not expect, say) is not.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import TYPE_CHECKING, Any, Self

from litestar_resumable._errors import StoreUnavailableError
from litestar_resumable._events import OPENED_ROUTE
from litestar_resumable._observe import call_hook, observer_for, timed
from litestar_resumable._waiting import Wakeup, retrying
from litestar_resumable._writer_base import WriterBase

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from litestar_resumable._events import StreamInfo, TerminalStatus
    from litestar_resumable._format import StreamFormat
    from litestar_resumable._observe import Observer
    from litestar_resumable._options import StreamOptions
    from litestar_resumable._store.base import StreamStore
    from litestar_resumable._writer_base import Closed

__all__ = ("StreamWriter",)

logger = logging.getLogger("litestar_resumable")


class StreamWriter(WriterBase):
    """Writes one running stream: as an async context manager, a stream opened for a writer elsewhere.

    Args:
        store: The store the stream is in (the web tier's store: the same Redis).
        stream_id: The stream, as ``ResumablePlugin.open_stream`` returned it.
        format: How items become events; None: the stream's own format (recorded when it was opened).
        options: The :class:`StreamOptions` it writes with (``max_batch_bytes``, ``max_event_bytes``,
            ``max_events``, ``store_retry_for``, ``expose_errors``, ``on_generation_end``); the lease is the
            stream's own.
        metrics: Count the generation in the Prometheus metrics (True: prometheus-client's default
            registry; or a ``CollectorRegistry``), as the plugin's ``metrics`` does.
        tracing: Trace it with OpenTelemetry (True: the global tracer provider; or a ``TracerProvider``).

    Leaving the block ends the stream ``done``; an exception ends it ``error`` (its text only with
    ``expose_errors``) and goes on; a stream cancelled meanwhile stays ``cancelled``, and the
    :class:`StreamClosedError` that a write to it raised is not raised further.
    """

    def __init__(
        self,
        store: StreamStore,
        stream_id: str,
        *,
        format: StreamFormat | None = None,  # noqa: A002 - the option's name, as users write it
        options: StreamOptions | None = None,
        metrics: Any = False,
        tracing: Any = False,
        observer: Observer | None = None,
        route: str = OPENED_ROUTE,
        owner: str | None = None,
        key: str | None = None,
        on_closed: Callable[[Closed], None] | None = None,
        claimed: bool = False,
    ) -> None:
        super().__init__(
            stream_id,
            format,
            options,
            observer or observer_for(metrics=metrics, tracing=tracing),
            route=route,
            owner=owner,
            key=key,
        )
        self.store = store
        self._claimed_at_start = claimed  # the plugin's producers create their streams claimed
        self._on_closed = on_closed
        self._ended_elsewhere = asyncio.Event()
        self._wake = Wakeup()
        self._room = asyncio.Event()
        self._draining = False
        self._stopped = False
        self._wrote_since_tick = False
        self._flusher: asyncio.Task[None] | None = None
        self._guard: asyncio.Task[None] | None = None
        self._ticker: asyncio.TimerHandle | None = None

    # -- a worker's side --

    async def wait_cancelled(self) -> None:
        """Return once the stream was ended by someone else: race it against the model to stop at once."""
        await self._ended_elsewhere.wait()

    async def __aenter__(self) -> Self:
        if not self._claimed_at_start:
            await self._take_over()
        self.start()
        self._deactivate = self.activate()  # the job's own spans (the model's) are the generation's children
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        self._deactivate()
        error, status, message = self._exit_ending(error)
        await self.drain(closing=status in ("done", "error"))
        await self.finish(*self._final_ending(status, message))
        return error is None and kind is not None  # swallow only the cancelled stream's StreamClosedError

    async def _take_over(self) -> None:
        claim = functools.partial(self.store.claim, self.stream_id)
        taken = await retrying(claim, self.options.store_retry_for, f"claiming stream {self.stream_id}")
        self._claimed(taken, await self.store.info(self.stream_id))

    # -- the writing itself (the plugin's producers use these directly) --

    def start(self) -> None:
        """Store the format's opening events and start the flusher, the guard and the lease ticker."""
        self._begin()
        if self._pending.opening():
            self._wake.set()
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
        if self._pending.item(item):
            self._wake.set()
        while self._pending.full and self.closed is None:
            self._room.clear()
            await self._room.wait()
        self._raise_if_closed()

    async def drain(self, *, closing: bool) -> bool:
        """Store everything pending (with the format's closing events if ``closing``) and stop the flusher.

        True if all of it is stored; False if the stream ended elsewhere or the store failed.
        """
        if closing and self.closed is None:
            self._pending.closing()
        self._draining = True
        self._wake.set()
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        return self.closed is None

    async def finish(self, status: TerminalStatus | None, message: str | None) -> None:
        """Write the terminal event (unless ``status`` is None or the stream ended elsewhere), stop the
        guard and the ticker, and report the end (metrics, span, log, ``on_generation_end``)."""
        info: StreamInfo | None = None
        try:
            if status is not None and self.closed != "ended elsewhere":
                end_it = functools.partial(self.store.finish, self.stream_id, status, message=message)
                info = await retrying(
                    lambda: timed(self._observer, "finish", end_it()),
                    self.options.store_retry_for,
                    f"ending stream {self.stream_id}",
                )
            else:
                with contextlib.suppress(StoreUnavailableError):
                    info = await self.store.info(self.stream_id)
        except StoreUnavailableError:
            logger.exception("could not end stream %s; readers will find it interrupted", self.stream_id)
        finally:
            await self._stop_tasks()
        end = self._ended(status, message, info)
        if end is not None:
            await call_hook(self.options.on_generation_end, end)

    async def stop(self) -> None:
        """Stop the writer's tasks without writing anything more (a writer that never ends its stream: no
        end to report, but no longer running).

        The flusher is told to stop, not cancelled: it ends after the store call it may have in flight.
        Cancelling redis-py in the middle of a command can stall that connection for seconds.
        """
        await self._stop_tasks()
        self._abandoned()

    async def _stop_tasks(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        self._stopped = True
        self._wake.set()
        if self._guard is not None and not self._guard.done():
            self._guard.cancel()  # it waits on an event, nothing else
            await asyncio.gather(self._guard, return_exceptions=True)

    # -- inside --

    def _close(self, why: Closed) -> None:
        if self.closed is None:
            self.closed = why
            self._room.set()  # a writer waiting for room must see it
            if why == "ended elsewhere":
                self._ended_elsewhere.set()
            if self._on_closed is not None:
                self._on_closed(why)

    def _tick(self) -> None:
        # A ticker, not a timeout per wait: every lease / 3 without a write it wakes the flusher, whose
        # empty write renews the lease of a writer that is thinking.
        if not self._wrote_since_tick:
            self._wake.set()
        self._wrote_since_tick = False
        self._ticker = asyncio.get_running_loop().call_later(self.options.lease / 3, self._tick)

    async def _append(self, batch: list[Any]) -> bool:
        observer = self._observer
        started = time.perf_counter() if observer.timing else 0.0
        try:
            stored = await self.store.append(self.stream_id, batch, lease=self.options.lease)
        except StoreUnavailableError as exc:  # retried; the first try stays a frame short
            if observer.timing:
                observer.store_failed("append", started, exc)
            append = functools.partial(self.store.append, self.stream_id, batch, lease=self.options.lease)
            retried: bool = await retrying(
                lambda: timed(observer, "append", append()),
                self.options.store_retry_for,
                f"writing stream {self.stream_id}",
            )
            return retried
        except BaseException as exc:
            if observer.timing:
                observer.store_failed("append", started, exc)
            raise
        if observer.timing:
            observer.store_call("append", started)
        return stored

    async def _flush(self) -> None:
        try:
            while True:
                if not self._draining:
                    await self._wake.wait()
                self._wake.clear()
                if self._stopped:
                    return
                batch = self._pending.take()
                self._room.set()
                if batch or not self._draining:
                    if not await self._append(batch):
                        self._close("ended elsewhere")
                        return
                    self._wrote_since_tick = True
                    self._stored(batch)
                if self._draining and not self._pending.events:
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
