"""Settings of a resumable route: plugin-wide defaults that ``@resumable(...)`` overrides per route."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from litestar import Request

from litestar_resumable._format import StreamFormat

__all__ = ("ConflictPolicy", "OwnerFunction", "StreamOptions")

ConflictPolicy = Literal["cancel", "reject"]
OwnerFunction = Callable[[Request[Any, Any, Any]], "str | Awaitable[str | None] | None"]
_LIMITS = ("max_event_bytes", "max_events", "max_followers")
_SSE = StreamFormat()


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
    owner: OwnerFunction | None = None
    """request -> owner id (a user id, say), recorded with the stream; other owners get 404 for it."""
    max_event_bytes: int = 1024 * 1024
    """Largest event (UTF-8 bytes of its data); a larger one ends the stream with an error."""
    max_events: int = 100_000
    """Most events in one stream; the next one ends it with an error."""
    max_followers: int = 1000
    """Most readers of one stream on one worker at a time; more get 429."""
    format: StreamFormat = _SSE
    """How items become events and events go on the wire (the AI SDK's UI message stream, say)."""

    def __post_init__(self) -> None:
        for name in ("ttl", "heartbeat", "lease"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)!r}")
        if self.retry < 0:
            raise ValueError(f"retry must be a number of milliseconds >= 0, got {self.retry!r}")
        if self.on_conflict not in ("cancel", "reject"):
            raise ValueError(f"on_conflict must be 'cancel' or 'reject', got {self.on_conflict!r}")
        for name in ("max_batch", *_LIMITS):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if self.owner is not None and not callable(self.owner):
            raise ValueError(f"owner must be a callable taking the request, got {self.owner!r}")

    def merged(self, overrides: dict[str, Any]) -> StreamOptions:
        return dataclasses.replace(
            self, **{name: value for name, value in overrides.items() if value is not None}
        )
