"""A stream's writer for sync code (Celery tasks, threads): redis-py's sync client, the same Lua scripts.

It writes what :class:`StreamWriter` writes, the same way: items become events through the stream's
format (``_batch.Pending``), a flusher stores everything pending in one append script call whenever it
runs, the lease is renewed by an empty append every ``lease / 3`` seconds without a write, and the
ending is chosen by the same rules. Where the async writer has tasks, this one has two daemon threads:

- the flusher, which waits on a condition for pending events, the end of the block or the next renewal;
- the guard, subscribed to the stream's ``end`` channel (sharded on a cluster), which hears a cancel from
  any worker at once. An append to an ended stream is refused in any case, so a guard that lost its
  connection delays noticing a cancel by at most ``lease / 3``.

The caller's thread only encodes items and waits while ``max_batch_bytes`` are pending. The calls to Redis,
and the guard's subscription, are ``_sync_redis``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Self

import redis
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from litestar_resumable._errors import StoreUnavailableError
from litestar_resumable._events import OPENED_ROUTE
from litestar_resumable._observe import call_hook_sync, observer_for
from litestar_resumable._options import StreamOptions
from litestar_resumable._sync_redis import UNREACHABLE, SyncRedis
from litestar_resumable._writer_base import WriterBase

if TYPE_CHECKING:
    from types import TracebackType

    from litestar_resumable._events import StreamEvent, StreamInfo, TerminalStatus
    from litestar_resumable._format import StreamFormat
    from litestar_resumable._writer_base import Closed

__all__ = ("SyncStreamWriter",)

logger = logging.getLogger("litestar_resumable")


class SyncStreamWriter(WriterBase):
    """Writes one stream opened with ``ResumablePlugin.open_stream``, from sync code, as a context manager.

        with SyncStreamWriter.from_url(REDIS_URL, stream_id) as writer:
            for delta in model(prompt):
                if writer.cancelled:
                    break
                writer.write(delta)

    Args:
        redis: A sync ``redis.Redis`` or ``redis.cluster.RedisCluster`` client for the web tier's Redis.
        stream_id: The stream, as ``open_stream`` returned it.
        key_prefix: The web tier's ``RedisStreamStore`` key prefix.
        format: How items become events; None: the stream's own format (recorded when it was opened).
        options: The :class:`StreamOptions` it writes with (``max_batch_bytes``, ``max_event_bytes``,
            ``max_events``, ``store_retry_for``, ``expose_errors``); the lease is the stream's own.

    Leaving the block ends the stream ``done``; an exception ends it ``error`` (its text only with
    ``expose_errors``) and goes on; ``SystemExit`` or ``KeyboardInterrupt`` (a worker being stopped) ends it
    ``interrupted``; a stream cancelled meanwhile stays ``cancelled``, and the :class:`StreamClosedError`
    that a write to it raised is not raised further. ``metrics`` and ``tracing`` are
    :class:`StreamWriter`'s; an async ``on_generation_end`` hook is run with ``asyncio.run``.
    """

    def __init__(
        self,
        redis: redis.Redis | RedisCluster,
        stream_id: str,
        *,
        key_prefix: str = "resumable",
        format: StreamFormat | None = None,  # noqa: A002 - the option's name, as users write it
        options: StreamOptions | None = None,
        metrics: Any = False,
        tracing: Any = False,
    ) -> None:
        super().__init__(
            stream_id,
            format,
            options,
            observer_for(metrics=metrics, tracing=tracing),
            route=OPENED_ROUTE,
            owner=None,
            key=None,
        )
        self.redis = redis
        self._owns_client = False
        self._redis = SyncRedis(redis, key_prefix, stream_id, self._observer)
        self._condition = threading.Condition()
        self._ended_elsewhere = threading.Event()
        self._draining = False
        self._stopped = threading.Event()
        self._flusher: threading.Thread | None = None
        self._guard: threading.Thread | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        stream_id: str,
        *,
        key_prefix: str = "resumable",
        cluster: bool = False,
        format: StreamFormat | None = None,  # noqa: A002 - the option's name
        options: StreamOptions | None = None,
        metrics: Any = False,
        tracing: Any = False,
        **redis_kwargs: Any,
    ) -> SyncStreamWriter:
        """A writer with a client of its own for the Redis at ``url`` (a cluster's node with ``cluster``),
        closed when the block ends; ``redis_kwargs`` go to ``redis.Redis.from_url``."""
        client: redis.Redis | RedisCluster = (
            RedisCluster.from_url(url, **redis_kwargs)
            if cluster
            else redis.Redis.from_url(url, **redis_kwargs)
        )
        writer = cls(
            client,
            stream_id,
            key_prefix=key_prefix,
            format=format,
            options=options,
            metrics=metrics,
            tracing=tracing,
        )
        writer._owns_client = True
        return writer

    # -- a worker's side --

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block until the stream was ended by someone else (True), or ``timeout`` seconds passed (False)."""
        return self._ended_elsewhere.wait(timeout)

    def __enter__(self) -> Self:
        try:
            self._take_over()
            self._start()
        except BaseException:
            self._close_client()
            raise
        self._deactivate = self.activate()  # the job's own spans (the model's) are the generation's children
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        self._deactivate()
        error, status, message = self._exit_ending(error)
        try:
            self._drain(closing=status in ("done", "error"))
            self._finish(*self._final_ending(status, message))
        finally:
            self._close_client()
        return error is None and kind is not None

    def write(self, item: Any) -> None:
        """Queue one item's events; block while ``max_batch_bytes`` are pending.

        Raises :class:`StreamLimitError` past a limit, :class:`StreamClosedError` once the stream has ended
        elsewhere, :class:`StoreUnavailableError` once the store has failed.
        """
        with self._condition:
            self._raise_if_closed()
            if self._pending.item(item):
                self._condition.notify_all()
            while self._pending.full and self.closed is None:
                self._condition.wait()
            self._raise_if_closed()

    # -- inside --

    def _take_over(self) -> None:
        self._claimed(*self._redis.claim(self.options.store_retry_for))

    def _start(self) -> None:
        self._begin()
        self._pending.opening()
        self._flusher = threading.Thread(
            target=self._flush, name=f"litestar-resumable flush {self.stream_id}", daemon=True
        )
        self._guard = threading.Thread(
            target=self._redis.watch_for_end,
            args=(self._stopped, self._heard_end),
            name=f"litestar-resumable guard {self.stream_id}",
            daemon=True,
        )
        self._flusher.start()
        self._guard.start()

    def _close(self, why: Closed) -> None:
        with self._condition:
            if self.closed is None:
                self.closed = why
                if why == "ended elsewhere":
                    self._ended_elsewhere.set()
                self._condition.notify_all()

    def _flush(self) -> None:
        renew_every = self.options.lease / 3
        next_renewal = 0.0  # at once: the claim's lease is renewed with the opening events
        try:
            while (taken := self._next_batch(next_renewal)) is not None:
                batch, draining = taken
                if batch or not draining:
                    if not self._redis.append(batch, self.options.lease, self.options.store_retry_for):
                        self._close("ended elsewhere")
                        return
                    next_renewal = time.monotonic() + renew_every
                    self._stored(batch)
                with self._condition:
                    if draining and not self._pending.events:
                        return
        except Exception as exc:
            if isinstance(exc, ResponseError) and "append at position" in str(exc):
                # The store expects another position: it lost (or never had) events it acknowledged.
                logger.exception("stream %s: the store does not have the events it took", self.stream_id)
                self._close("store lost events")
            else:
                logger.exception("the store did not take the events of stream %s", self.stream_id)
                self._close("store failed")

    def _next_batch(self, next_renewal: float) -> tuple[list[StreamEvent], bool] | None:
        """Wait for events, the end of the block or the renewal's time; the batch and whether draining
        (None: stopped)."""
        with self._condition:
            while not (self._pending.events or self._draining or self._stopped.is_set()):
                remaining = next_renewal - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            if self._stopped.is_set():
                return None
            batch = self._pending.take()
            self._condition.notify_all()  # room for a writer that waits
            return batch, self._draining

    def _heard_end(self) -> None:
        with self._condition:
            draining = self._draining
        if not draining:
            self._close("ended elsewhere")

    def _drain(self, *, closing: bool) -> None:
        with self._condition:
            if closing and self.closed is None:
                self._pending.closing()
            self._draining = True
            self._condition.notify_all()
        if self._flusher is not None:
            self._flusher.join()

    def _finish(self, status: TerminalStatus, message: str | None) -> None:
        info: StreamInfo | None = None
        try:
            if self.closed != "ended elsewhere":
                info = self._redis.finish(status, message, self.options.store_retry_for)
            else:
                info = self._redis.info()
        except (StoreUnavailableError, *UNREACHABLE):
            logger.exception("could not end stream %s; readers will find it interrupted", self.stream_id)
        finally:
            self._stopped.set()
            with self._condition:
                self._condition.notify_all()
            if self._guard is not None:
                self._guard.join()
        end = self._ended(None if self.closed == "ended elsewhere" else status, message, info)
        if end is not None:
            call_hook_sync(self.options.on_generation_end, end)

    def _close_client(self) -> None:
        if self._owns_client:
            self.redis.close()
