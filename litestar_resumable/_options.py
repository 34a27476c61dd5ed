"""The options of a resumable route: plugin-wide defaults that ``@resumable(...)`` overrides per route.

:class:`StreamOptions` is the one definition: names, types, defaults, documentation and checks.
:class:`RouteOptions` names the same options as a ``TypedDict``, so that ``ResumablePlugin(**defaults)`` and
``@resumable(**overrides)`` are typed (``Unpack``) and editors complete them; a test keeps the two equal,
and docs/configuration.md's option table is generated from this module's source and checked by a test.

An option that is not passed is not set: the route takes the plugin's value, the plugin the default.
``None`` is a value of its own where an option allows it (``owner=None`` switches a plugin-wide owner
function off for one route; ``max_duration=None`` is no limit).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from litestar import Request

from litestar_resumable._format import StreamFormat
from litestar_resumable._generation_end import GenerationEnd

__all__ = ("ConflictPolicy", "GenerationHook", "OwnerFunction", "RouteOptions", "StreamOptions")

ConflictPolicy = Literal["cancel", "reject"]
OwnerFunction = Callable[[Request[Any, Any, Any]], "str | Awaitable[str | None] | None"]
GenerationHook = Callable[[GenerationEnd], "Awaitable[None] | None"]
_MIB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class StreamOptions:
    """The settings of one resumable route (or the plugin's defaults for all of them)."""

    enabled: bool = True
    """False serves the route as a plain SSE stream: no ids, no store, no resume."""
    ttl: float = 3600.0
    """Seconds a stream stays readable after it ends."""
    heartbeat: float = 15.0
    """Seconds without events after which a follower sends a ``: ping`` comment."""
    retry: int = 1000
    """Milliseconds sent as the SSE ``retry:`` field: how long a browser waits before reconnecting."""
    lease: float = 10.0
    """Seconds a producer's lease lasts; a dead producer's stream ends ``interrupted`` within 1.5 leases."""
    on_conflict: ConflictPolicy = "cancel"
    """With ``key=``: what a new generation does to a running one of the same key (cancel it, or get 409)."""
    expose_errors: bool = False
    """Send the handler's exception text in the terminal event of a failed stream."""
    owner: OwnerFunction | None = None
    """request -> owner id (a user id, say), recorded with the stream; other owners get 404 for it."""
    max_event_bytes: int = _MIB
    """Largest event (UTF-8 bytes of its data); a larger one ends the stream with an error."""
    max_events: int = 100_000
    """Most events in one stream; the next one ends it with an error."""
    max_followers: int = 1000
    """Most readers of one stream on one worker at a time; more get 429."""
    max_duration: float | None = None
    """Seconds a generation may run; a longer one is stopped and ends ``error``, naming the limit."""
    max_batch_bytes: int = _MIB
    """Most bytes of events in one store write; a producer this far ahead of the store waits for it."""
    max_read_bytes: int = _MIB
    """Most bytes of events a follower reads from the store at once (one event at least)."""
    store_retry_for: float = 4.0
    """Seconds a producer retries a store that is out of reach before it gives the stream up."""
    format: StreamFormat = StreamFormat()  # noqa: RUF009 - immutable, shared by design
    """How items become events and events go on the wire (the AI SDK's UI message stream, say)."""
    on_generation_end: GenerationHook | None = None
    """Called once per generation, on the worker that produced it, with a ``GenerationEnd`` (status, events,
    bytes, duration, owner, key); sync or async. A hook that raises is logged and changes nothing."""

    def __post_init__(self) -> None:
        for name in ("ttl", "heartbeat", "lease"):
            _check(name, getattr(self, name), getattr(self, name) > 0, "a positive number of seconds")
        _check("retry", self.retry, self.retry >= 0, "a number of milliseconds >= 0")
        _check(
            "on_conflict", self.on_conflict, self.on_conflict in ("cancel", "reject"), "'cancel' or 'reject'"
        )
        for name in ("max_event_bytes", "max_events", "max_followers", "max_batch_bytes", "max_read_bytes"):
            _check(name, getattr(self, name), getattr(self, name) >= 1, "at least 1")
        _check(
            "max_duration",
            self.max_duration,
            self.max_duration is None or self.max_duration > 0,
            "a positive number of seconds or None",
        )
        _check("store_retry_for", self.store_retry_for, self.store_retry_for >= 0, ">= 0 seconds")
        _check(
            "owner", self.owner, self.owner is None or callable(self.owner), "a callable taking the request"
        )
        _check("format", self.format, isinstance(self.format, StreamFormat), "a StreamFormat")
        _check(
            "on_generation_end",
            self.on_generation_end,
            self.on_generation_end is None or callable(self.on_generation_end),
            "a callable taking a GenerationEnd, or None",
        )

    def merged(self, overrides: RouteOptions) -> StreamOptions:
        """These options with ``overrides`` applied (a route's over the plugin's)."""
        unknown = set(overrides) - set(OPTION_NAMES)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides)


def _check(name: str, value: Any, ok: bool, expected: str) -> None:  # noqa: FBT001 - a predicate's outcome
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


class RouteOptions(TypedDict, total=False):
    """The options of :class:`StreamOptions` as keyword arguments; see it for each one's meaning."""

    enabled: bool
    ttl: float
    heartbeat: float
    retry: int
    lease: float
    on_conflict: ConflictPolicy
    expose_errors: bool
    owner: OwnerFunction | None
    max_event_bytes: int
    max_events: int
    max_followers: int
    max_duration: float | None
    max_batch_bytes: int
    max_read_bytes: int
    store_retry_for: float
    format: StreamFormat
    on_generation_end: GenerationHook | None


OPTION_NAMES = tuple(field.name for field in dataclasses.fields(StreamOptions))
