"""Stream ids and event ids.

An event id is ``<stream id>.<position>``: it names the stream and the position in it, so a bare
``Last-Event-ID`` is enough to resume. Stream ids are 16 bytes from :mod:`secrets` in URL-safe base64
(22 characters, 128 bits). Both use only ``A-Z a-z 0-9 - _ .``, which browsers send in
``Last-Event-ID`` without a CORS preflight, and stay far below the contract's 128-byte limit.

Parsing is total: any input either parses or raises :class:`MalformedIdError` with a message fit to
show the client.
"""

from __future__ import annotations

import re
import secrets

__all__ = ("MalformedIdError", "format_event_id", "new_stream_id", "parse_event_id", "parse_stream_id")

_STREAM_ID_BYTES = 16
_STREAM_ID = re.compile(r"[A-Za-z0-9_-]{22}")
# 15 digits keep a position exact in a double, the number type of the Redis Lua scripts.
_EVENT_ID = re.compile(r"([A-Za-z0-9_-]{22})\.(0|[1-9][0-9]{0,14})")
MAX_EVENT_ID_LENGTH = 128


class MalformedIdError(ValueError):
    """A stream id or event id that this library cannot have issued."""


def new_stream_id() -> str:
    return secrets.token_urlsafe(_STREAM_ID_BYTES)


def format_event_id(stream_id: str, position: int) -> str:
    return f"{stream_id}.{position}"


def parse_stream_id(value: str) -> str:
    if _STREAM_ID.fullmatch(value) is None:
        raise MalformedIdError("malformed stream id: expected 22 characters of A-Z, a-z, 0-9, '-' and '_'")
    return value


def parse_event_id(value: str) -> tuple[str, int]:
    """Split an event id into its stream id and position."""
    if len(value) > MAX_EVENT_ID_LENGTH:
        raise MalformedIdError(f"malformed event id: longer than {MAX_EVENT_ID_LENGTH} characters")
    match = _EVENT_ID.fullmatch(value)
    if match is None:
        raise MalformedIdError(
            "malformed event id: expected '<stream id>.<position>' as sent in an SSE 'id:' field"
        )
    return match.group(1), int(match.group(2))
