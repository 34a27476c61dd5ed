"""What the library tells about itself: Prometheus metrics, OpenTelemetry spans, lifecycle logs and hooks.

One :class:`Observer` per configuration (``metrics=``, ``tracing=``) is shared by the plugin, its producers
and followers, and by writers in job-queue workers. Every call site tells it what happened (a generation
started, a batch was stored, a follower opened, a store call took so long) and it updates whatever is on:

- metrics (``prometheus-client``, the ``metrics`` extra; the collectors are ``_metrics``'s) on the default
  registry, or the one passed, so that Litestar's ``PrometheusController`` exposes them with no route of
  ours. Label children are kept per label value, so the per-batch calls of the hot path cost a dict lookup
  and an increment;
- a span per generation (``opentelemetry-api``, the ``otel`` extra; made by ``_spans``), from its start to
  its terminal event, a new trace linked to the span that was current when it started (the request's,
  under Litestar's OpenTelemetry plugin; a job's, in a worker). It is current in the producer's task, so
  the model's own spans (an instrumented OpenAI client, say) are its children;
- one log line per lifecycle step on the ``litestar_resumable`` logger, with the stream id in the message
  and as ``extra`` fields (``stream_id``, ``route``, ``step``, ...) for structured formatters; none per event.

Each generation's end reaches the route's ``on_generation_end`` hook as a :class:`GenerationEnd`, on the
worker that produced it; a hook that raises is logged and changes nothing.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from litestar_resumable._errors import KeyConflictError, StreamExistsError
from litestar_resumable._metrics import metrics_on
from litestar_resumable._spans import activate, end_span, start_span, tracer_for

if TYPE_CHECKING:
    from litestar_resumable._generation_end import GenerationEnd
    from litestar_resumable._metrics import Metrics
    from litestar_resumable._options import GenerationHook

__all__ = (
    "NO_OBSERVER",
    "Generation",
    "Observer",
    "ResumeKind",
    "call_hook",
    "call_hook_sync",
    "observer_for",
    "timed",
)

T = TypeVar("T")

logger = logging.getLogger("litestar_resumable")

StoreOperation = Literal["create", "append", "read", "finish"]
ResumeKind = Literal["last_event_id", "replay", "after_end"]

_ANSWERS = (KeyConflictError, StreamExistsError)  # store replies, not store failures


class Generation:
    """One generation as observed: its route, its start, its span."""

    __slots__ = ("_bytes", "_events", "_observer", "_running", "_span", "route", "started_at", "stream_id")

    def __init__(self, observer: Observer, stream_id: str, route: str) -> None:
        self._observer = observer
        self.stream_id = stream_id
        self.route = route
        self.started_at = time.monotonic()
        self._span: Any = None
        self._running = True
        metrics = observer.metrics
        self._events: Any = None
        self._bytes: Any = None
        if metrics is not None:
            metrics.child(metrics.started, route).inc()
            metrics.child(metrics.running, route).inc()
            self._events = metrics.child(metrics.events, route)  # the per-batch counters, looked up once
            self._bytes = metrics.child(metrics.event_bytes, route)
        if observer.tracer is not None:
            self._span = start_span(observer.tracer, stream_id, route)
        _log(logging.INFO, "generation started", stream_id, route=route)

    def activate(self) -> Callable[[], None]:
        """Make the span current in this task (its children: the model's spans); returns the undo."""
        if self._span is None:
            return _nothing
        return activate(self._span)

    def stored(self, events: int, nbytes: int) -> None:
        if self._events is not None:
            self._events.inc(events)
            self._bytes.inc(nbytes)

    def step(self, name: str, level: int = logging.INFO, **fields: Any) -> None:
        """A lifecycle step of the generation: a span event and a log line."""
        if self._span is not None:
            self._span.add_event(name, {k: v for k, v in fields.items() if v is not None})
        _log(level, name, self.stream_id, route=self.route, **fields)

    def failed(self, error: BaseException) -> None:
        """The handler or the writer failed: recorded on the span (the log line is the caller's)."""
        if self._span is not None:
            self._span.record_exception(error)

    def ended(self, end: GenerationEnd, *, ended_elsewhere: bool) -> None:
        """Report the end once: span events for a cancel or a lost lease, metrics, the span, the log line."""
        if not self._running:
            return
        self._running = False
        if end.status == "cancelled":
            self.step("cancelled")
        elif end.status == "interrupted" and ended_elsewhere:
            # Someone ended it for this writer: readers gave it up for dead (it renewed no lease in time).
            self.step("lease lost", logging.WARNING)
        metrics = self._observer.metrics
        if metrics is not None:
            metrics.child(metrics.running, self.route).dec()
            metrics.child(metrics.ended, self.route, end.status).inc()
        if self._span is not None:
            end_span(self._span, end)
        _log(
            logging.INFO,
            "generation ended",
            self.stream_id,
            route=self.route,
            status=end.status,
            events=end.events,
            bytes=end.bytes,
            duration=round(end.duration, 3),
        )

    def abandoned(self) -> None:
        """The writer stopped without an end to report (it never wrote): undo the running count."""
        if self._running:
            self._running = False
            metrics = self._observer.metrics
            if metrics is not None:
                metrics.child(metrics.running, self.route).dec()
            if self._span is not None:
                self._span.end()


async def call_hook(hook: GenerationHook | None, end: GenerationEnd) -> None:
    """Call a route's ``on_generation_end``; what it raises is logged, not raised."""
    if hook is not None:
        try:
            result = hook(end)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("on_generation_end failed for stream %s", end.stream_id)


def call_hook_sync(hook: GenerationHook | None, end: GenerationEnd) -> None:
    """``call_hook`` from sync code (a thread without an event loop): an async hook is run to its end."""
    if hook is not None:
        try:
            result = hook(end)
            if inspect.isawaitable(result):
                asyncio.run(_awaited(result))
        except Exception:
            logger.exception("on_generation_end failed for stream %s", end.stream_id)


async def _awaited(awaitable: Awaitable[Any]) -> None:
    await awaitable


async def timed(observer: Observer, operation: StoreOperation, call: Awaitable[T]) -> T:
    """Await a store call, timed for the metrics (when they are on). See :meth:`Observer.store_failed`
    for what counts as an error."""
    if not observer.timing:
        return await call
    started = time.perf_counter()
    try:
        result = await call
    except BaseException as exc:
        observer.store_failed(operation, started, exc)
        raise
    observer.store_call(operation, started)
    return result


class Observer:
    """Metrics and spans, each on or off; logs always. See the module's documentation."""

    def __init__(self, metrics: Metrics | None = None, tracer: Any = None) -> None:
        self.metrics = metrics
        self.tracer = tracer
        self._store_seconds: dict[str, Any] = {}  # operation -> its histogram child (a call per batch)

    @property
    def timing(self) -> bool:
        """Whether store calls are timed (only for metrics: a clock read per call otherwise saved)."""
        return self.metrics is not None

    def generation(self, stream_id: str, route: str) -> Generation:
        return Generation(self, stream_id, route)

    def follower(self, route: str) -> Callable[[], None]:
        """A follower opened; returns what to call when it closes."""
        metrics = self.metrics
        if metrics is None:
            return _nothing
        gauge = metrics.child(metrics.followers, route)
        gauge.inc()
        return gauge.dec  # type: ignore[no-any-return]

    def first_event(self, route: str, seconds: float) -> None:
        metrics = self.metrics
        if metrics is not None:
            metrics.child(metrics.first_event, route).observe(seconds)

    def resumed(self, stream_id: str, route: str, kind: ResumeKind, after: int, last: int) -> None:
        """A request resumed a stream after position ``after``, when it had ``last`` events."""
        metrics = self.metrics
        if metrics is not None:
            metrics.child(metrics.resumes, route, kind).inc()
        _log(
            logging.INFO,
            "stream resumed",
            stream_id,
            route=route,
            kind=kind,
            after=after,
            behind=last - after,
        )

    def cancelled(self, stream_id: str, route: str) -> None:
        _log(logging.INFO, "generation cancelled", stream_id, route=route)

    def store_failed(self, operation: StoreOperation, started: float, error: BaseException) -> None:
        """A store call raised ``error``. An answer the store gave on purpose (a key's running stream, a
        create that was retried) is a timed call and no error; a cancelled call (a client gone) is
        neither, since it says nothing of the store."""
        if not isinstance(error, Exception):
            return
        self.store_call(operation, started, failed=not isinstance(error, _ANSWERS))

    def store_call(self, operation: StoreOperation, started: float, *, failed: bool = False) -> None:
        """A store call that began at ``started`` (``time.perf_counter()``) has returned, or failed."""
        metrics = self.metrics
        if metrics is not None:
            seconds = self._store_seconds.get(operation)
            if seconds is None:
                seconds = self._store_seconds[operation] = metrics.child(metrics.store_seconds, operation)
            seconds.observe(time.perf_counter() - started)
            if failed:
                metrics.child(metrics.store_errors, operation).inc()


NO_OBSERVER = Observer()
"""Logs only: what a writer or plugin without ``metrics=`` or ``tracing=`` uses."""

_OBSERVERS: dict[tuple[int, int], tuple[Any, Any, Observer]] = {}


def observer_for(*, metrics: Any = False, tracing: Any = False) -> Observer:
    """The observer of a configuration, shared by everything configured alike in this process.

    ``metrics``: False, True (prometheus-client's default registry) or a ``CollectorRegistry``.
    ``tracing``: False, True (OpenTelemetry's global tracer provider) or a ``TracerProvider``.
    """
    if metrics is False and tracing is False:
        return NO_OBSERVER
    key = (id(metrics), id(tracing))
    known = _OBSERVERS.get(key)
    if known is not None and known[0] is metrics and known[1] is tracing:
        return known[2]
    collectors = None if metrics is False else metrics_on(None if metrics is True else metrics)
    tracer = None if tracing is False else tracer_for(tracing)
    observer = Observer(collectors, tracer)
    _OBSERVERS[key] = (metrics, tracing, observer)
    return observer


def _log(level: int, step: str, stream_id: str, **fields: Any) -> None:
    if logger.isEnabledFor(level):
        shown = " ".join(f"{name}={value}" for name, value in fields.items() if value is not None)
        logger.log(
            level,
            "%s: stream %s %s",
            step,
            stream_id,
            shown,
            extra={"step": step, "stream_id": stream_id, **fields},
        )


def _nothing() -> None:
    pass
