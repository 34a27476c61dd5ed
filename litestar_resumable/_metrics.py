"""The library's Prometheus collectors (the ``metrics`` extra): one :class:`Metrics` per registry.

The collectors are registered once per registry (prometheus-client's default one, or the one passed), so
that every observer configured with it counts into the same series. A label value's child is looked up
once and kept (:meth:`Metrics.child`): the hot path's per-batch calls cost a dict lookup and an increment.
"""

from __future__ import annotations

from typing import Any

__all__ = ("Metrics", "metrics_on")

_STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_FIRST_EVENT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """The library's Prometheus collectors on one registry."""

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram  # noqa: PLC0415 - the optional extra

        self.started = Counter(
            "resumable_generations_started",
            "Generations started by this process (producers and writers).",
            ["route"],
            registry=registry,
        )
        self.ended = Counter(
            "resumable_generations_ended",
            "Generations ended by this process, by terminal status.",
            ["route", "status"],
            registry=registry,
        )
        # livesum: in prometheus-client's multiprocess mode, one series summed over the live processes
        # (as Litestar's own middleware does); a process that died counts until mark_process_dead(pid).
        self.running = Gauge(
            "resumable_generations_running",
            "Generations this process is producing or writing now.",
            ["route"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.followers = Gauge(
            "resumable_followers",
            "Open SSE responses of streams in this process.",
            ["route"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.resumes = Counter(
            "resumable_resumes",
            "Requests that resumed a stream: after a Last-Event-ID, from the start, or after its end.",
            ["route", "kind"],
            registry=registry,
        )
        self.events = Counter(
            "resumable_events", "Events stored by this process.", ["route"], registry=registry
        )
        self.event_bytes = Counter(
            "resumable_event_bytes",
            "UTF-8 bytes of the data of the events stored by this process.",
            ["route"],
            registry=registry,
        )
        self.store_errors = Counter(
            "resumable_store_errors", "Store calls that failed.", ["operation"], registry=registry
        )
        self.store_seconds = Histogram(
            "resumable_store_seconds",
            "Seconds store calls took.",
            ["operation"],
            buckets=_STORE_BUCKETS,
            registry=registry,
        )
        self.first_event = Histogram(
            "resumable_time_to_first_event_seconds",
            "Seconds from a request to the first event its SSE response wrote.",
            ["route"],
            buckets=_FIRST_EVENT_BUCKETS,
            registry=registry,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, collector: Any, *labels: str) -> Any:
        """``collector``'s child for these label values, made on the first call and kept."""
        key = (id(collector), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = collector.labels(*labels)
        return child


_METRICS: dict[int, tuple[Any, Metrics]] = {}  # id(registry) -> (registry, its collectors)


def metrics_on(registry: Any) -> Metrics:
    """The collectors on ``registry`` (None: prometheus-client's default registry), registered once."""
    if registry is None:
        from prometheus_client import REGISTRY  # noqa: PLC0415 - the optional extra

        registry = REGISTRY
    known = _METRICS.get(id(registry))
    if known is None or known[0] is not registry:
        known = _METRICS[id(registry)] = (registry, Metrics(registry))
    return known[1]
