"""The library's exceptions: one tree under :class:`ResumableError`, so apps can catch ours alone."""

from __future__ import annotations

__all__ = (
    "KeyConflictError",
    "ResumableError",
    "StoreUnavailableError",
    "StreamClosedError",
    "StreamExistsError",
    "StreamLimitError",
)


class ResumableError(Exception):
    """The root of every exception this library raises on purpose."""


class StoreUnavailableError(ResumableError):
    """The store cannot take this call now: its backend is out of reach, or it is full. Try again later."""


class StreamExistsError(ResumableError):
    """``create`` was given the id of a stream the store already has."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id} exists already")
        self.stream_id = stream_id


class KeyConflictError(ResumableError):
    """A running generation holds the key and the new one must leave it be (``on_conflict="reject"``)."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id} is running for this key")
        self.stream_id = stream_id
        """The running stream, which the caller may resume or cancel."""


class StreamClosedError(ResumableError):
    """A write to a stream that has ended (cancelled anywhere, or given up as interrupted)."""


class StreamLimitError(ResumableError):
    """A write passed a limit of the stream (``max_events``, ``max_event_bytes``); the message says which."""
