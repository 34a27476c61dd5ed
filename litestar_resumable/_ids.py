"""Stream ids and event ids.

An event id is ``<stream id>.<position>``: it names the stream and the position in it, so a bare
``Last-Event-ID`` is enough to resume. A stream id is 26 characters: a 4-character slot tag, then 16
bytes from :mod:`secrets` in URL-safe base64 (22 characters, 128 bits). Both use only
``A-Z a-z 0-9 - _ .``, which browsers send in ``Last-Event-ID`` without a CORS preflight, and stay far
below the contract's 128-byte limit.

The tag is where a store may keep a stream together with others (the Redis store's Cluster hash tag).
A stream started for a key (a chat id) takes the key's tag, so the key's entry and every stream of that
key share it: claiming the key and creating the stream can then be one atomic step even on a Redis
Cluster. Streams without a key get a random tag. The tag is a hash of the key, not the key.

Parsing is total: any input either parses or raises :class:`MalformedIdError` with a message fit to
show the client.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

__all__ = (
    "MAX_EVENT_ID_LENGTH",
    "MalformedIdError",
    "is_stream_id",
    "key_tag",
    "new_stream_id",
    "parse_event_id",
    "stream_tag",
)

_RANDOM_BYTES = 16
_TAG_LENGTH = 4
_STREAM_ID = re.compile(r"[A-Za-z0-9_-]{26}")
# 15 digits keep a position exact in a double, the number type of the Redis Lua scripts.
_EVENT_ID = re.compile(r"([A-Za-z0-9_-]{26})\.(0|[1-9][0-9]{0,14})")
MAX_EVENT_ID_LENGTH = 128


class MalformedIdError(ValueError):
    """An event id that this library cannot have issued."""


def key_tag(key: str) -> str:
    """The slot tag of a key: 4 URL-safe base64 characters of its SHA-256."""
    return base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()[:3]).decode()


def stream_tag(stream_id: str) -> str:
    return stream_id[:_TAG_LENGTH]


def new_stream_id(key: str | None = None) -> str:
    """A new stream id; with ``key``, one that shares the key's slot tag."""
    tag = secrets.token_urlsafe(3) if key is None else key_tag(key)
    return tag + secrets.token_urlsafe(_RANDOM_BYTES)


def is_stream_id(value: str) -> bool:
    return _STREAM_ID.fullmatch(value) is not None


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
