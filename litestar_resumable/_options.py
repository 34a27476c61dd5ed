"""Settings of a resumable route: plugin-wide defaults that ``@resumable(...)`` overrides per route."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ("ConflictPolicy", "StreamOptions")

ConflictPolicy = Literal["cancel", "reject"]


@dataclass(frozen=True)
class StreamOptions:
    enabled: bool = True
    """False serves the route as a plain SSE stream: no ids, no store, no resume."""
    ttl: float = 3600.0
    """Seconds a stream stays readable after it ends."""
    heartbeat: float = 15.0
    """Seconds without events after which a follower gets a ``: ping`` comment."""
    retry: int = 1000
    """Milliseconds sent as the SSE ``retry:`` field: how long a browser waits before reconnecting."""
    lease: float = 10.0
    """Seconds a producer's lease lasts; a dead producer's stream ends ``interrupted`` within 1.5 leases."""
    on_conflict: ConflictPolicy = "cancel"
    """With ``key=``: what a new generation does to an active one of the same key (cancel it, or get 409)."""
    expose_errors: bool = False
    """Send the handler's exception text in the terminal event of a failed stream."""
    max_batch: int = 512
    """Most events per store write; a producer that gets this far ahead of the store waits for it."""

    def __post_init__(self) -> None:
        for name in ("ttl", "heartbeat", "lease"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)!r}")
        if self.retry < 0:
            raise ValueError(f"retry must be a number of milliseconds >= 0, got {self.retry!r}")
        if self.on_conflict not in ("cancel", "reject"):
            raise ValueError(f"on_conflict must be 'cancel' or 'reject', got {self.on_conflict!r}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {self.max_batch!r}")

    def merged(self, overrides: dict[str, Any]) -> StreamOptions:
        return dataclasses.replace(
            self, **{name: value for name, value in overrides.items() if value is not None}
        )
