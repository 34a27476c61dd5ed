"""The Durable Streams protocol on the wire: offsets, cursors, headers, bodies to events and back.

The protocol (``PROTOCOL.md`` of github.com/durable-streams/durable-streams) reads and writes streams of
bytes by offset. Here a stream is a store's stream of events, and the routes (``_durable_routes``) map one
onto the other:

- **An append is one stored event.** Its body is kept byte for byte as the event's data: as text when it
  is UTF-8 (so Redis holds it at its size, and a text stream's events are plain strings), else as the
  Latin-1 decoding of its bytes under the event name ``BYTES`` (one character per byte, which encodes back
  exactly). A JSON append is one event too: its messages (one, or the elements of a top-level array) joined
  with commas, each message as the client sent it.
- **An offset is a position**: ``<position>_<byte in the event>``, each 16 zero-padded digits, so offsets
  compare as strings in stream order. Positions are the store's own (1, 2, 3, ...), so the offset after an
  event costs nothing to find, and a read from an offset is ``read_after(position)``. The second part is
  always 0: reads end at event boundaries. It keeps the shape of the reference server's offsets, which the
  protocol's fork tests write out by hand.
- **A closed stream** is a stream that has ended: its terminal event is the close, and is never data.

Streams of ``@resumable`` routes are read through the same routes as ``application/json`` streams whose
messages are their events (``{"data": ...}``, with ``"event"`` when named); their terminal event is the
close, and its status is sent as the ``Stream-Resumable-Status`` header (and ``resumableStatus`` in SSE).
"""

from __future__ import annotations

import base64
import math
import random
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import msgspec

from litestar_resumable._events import TERMINAL_EVENT
from litestar_resumable._store.durable_types import media_type

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from litestar_resumable._events import StreamEvent

__all__ = (
    "BYTES",
    "EXPOSED_HEADERS",
    "JSON_TYPE",
    "NOW",
    "START",
    "ProtocolError",
    "body_of",
    "cursor_after",
    "events_of",
    "first_part",
    "is_json",
    "is_text",
    "offset_of",
    "parse_count",
    "parse_expires_at",
    "parse_offset",
    "parse_ttl",
    "resumable_body",
    "resumable_status",
    "rfc3339",
    "sse_control",
    "sse_data",
)

BYTES: Final = "b"
"""The event name of an append that is not UTF-8: its data is the Latin-1 decoding of its bytes."""
JSON_TYPE: Final = "application/json"
START: Final = -1
NOW: Final = -2
"""What :func:`parse_offset` returns for the sentinels ``-1`` (the start) and ``now`` (the tail)."""

_OFFSET = re.compile(r"([0-9]{16})_([0-9]{16})")
_TTL = re.compile(r"0|[1-9][0-9]{0,11}")
_SEQ_INT = re.compile(r"0|[1-9][0-9]{0,15}")
_MAX_SAFE_INTEGER = 2**53 - 1
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CURSOR_EPOCH = datetime(2024, 10, 9, tzinfo=UTC).timestamp()
_CURSOR_INTERVAL = 20  # seconds
_json = msgspec.json.Encoder()

EXPOSED_HEADERS: Final = (
    "Stream-Next-Offset",
    "Stream-Up-To-Date",
    "Stream-Cursor",
    "Stream-Closed",
    "Stream-TTL",
    "Stream-Expires-At",
    "Stream-SSE-Data-Encoding",
    "Stream-Resumable-Status",
    "Producer-Epoch",
    "Producer-Seq",
    "Producer-Expected-Seq",
    "Producer-Received-Seq",
    "ETag",
    "Location",
)
"""Response headers a browser client must be allowed to read (CORS ``expose_headers``)."""


class ProtocolError(Exception):
    """A request the protocol answers with an error status: a clear 4xx, nothing stored changed."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


# -- offsets and cursors --


def offset_of(position: int) -> str:
    """The offset after the event at ``position`` (0: the start)."""
    return f"{position:016d}_{0:016d}"


def parse_offset(values: Sequence[str]) -> int:
    """The position an ``offset`` query parameter names: :data:`START`, :data:`NOW` or a position."""
    if not values:
        return START
    if len(values) > 1:
        raise ProtocolError(400, "give the offset parameter once")
    value = values[0]
    if value == "-1":
        return START
    if value == "now":
        return NOW
    match = _OFFSET.fullmatch(value)
    if match is None:
        raise ProtocolError(400, "malformed offset: use -1, now, or an offset this server returned")
    if int(match.group(2)) != 0:
        raise ProtocolError(400, "malformed offset: this server's offsets end in _0000000000000000")
    return int(match.group(1))


def cursor_after(client_cursor: str | None) -> str:
    """The ``Stream-Cursor`` of a live response (PROTOCOL.md, "Server-Generated Cursors"): the current
    20-second interval since 2024-10-09, or, if the client's is not behind it, the client's plus 1 s to 1 h
    of random jitter, so a cursor never repeats and CDN caches cannot loop."""
    current = math.floor((time.time() - _CURSOR_EPOCH) / _CURSOR_INTERVAL)
    if client_cursor is None or not client_cursor.isdigit() or len(client_cursor) > 18:  # noqa: PLR2004
        return str(current)
    given = int(client_cursor)
    if given < current:
        return str(current)
    jitter = random.randint(1, 3600)  # noqa: S311 - spreads cache keys; not a secret
    return str(given + max(1, math.ceil(jitter / _CURSOR_INTERVAL)))


# -- headers --


def is_json(content_type: str) -> bool:
    return media_type(content_type) == JSON_TYPE


def is_text(content_type: str) -> bool:
    """Whether SSE sends the stream's data as text (``text/*`` and JSON) rather than base64."""
    kind = media_type(content_type)
    return kind.startswith("text/") or kind == JSON_TYPE


def parse_ttl(value: str) -> int:
    """A ``Stream-TTL``: whole seconds, no sign, no leading zeros, no exponent."""
    if _TTL.fullmatch(value) is None:
        raise ProtocolError(400, "Stream-TTL must be a whole number of seconds, like 3600")
    return int(value)


def parse_expires_at(value: str) -> float:
    """A ``Stream-Expires-At`` (RFC 3339 with a time zone) as Unix time."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None or "T" not in value.upper():
        raise ProtocolError(400, "Stream-Expires-At must be an RFC 3339 time, like 2030-01-01T00:00:00Z")
    return moment.timestamp()


def rfc3339(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_count(name: str, value: str) -> int:
    """A non-negative whole number without sign or leading zeros (``Stream-Fork-Sub-Offset``)."""
    if _SEQ_INT.fullmatch(value) is None:
        raise ProtocolError(400, f"{name} must be a whole number, like 3")
    return int(value)


def parse_producer_number(name: str, value: str) -> int:
    if _SEQ_INT.fullmatch(value) is None or int(value) > _MAX_SAFE_INTEGER:
        raise ProtocolError(400, f"{name} must be a whole number from 0 to 2^53-1")
    return int(value)


# -- bodies and events --


def events_of(body: bytes, content_type: str, *, create: bool) -> list[tuple[str | None, str]]:
    """The event an append's body is stored as (none for an empty body, or an empty JSON array on create).

    JSON bodies are checked (400 if malformed, or an empty array on append) and a top-level array is
    flattened one level: its elements are the messages.
    """
    if not body:
        return []
    if not is_json(content_type):
        try:
            return [(None, body.decode())]
        except UnicodeDecodeError:
            return [(BYTES, body.decode("latin-1"))]
    try:
        text = body.decode()
        stripped = text.strip()
        if stripped.startswith("["):
            messages = msgspec.json.decode(stripped, type=list[msgspec.Raw])
        else:
            messages = [msgspec.json.decode(stripped, type=msgspec.Raw)]
    except (UnicodeDecodeError, msgspec.DecodeError) as exc:
        raise ProtocolError(400, f"the body is not valid JSON: {exc}") from exc
    if not messages:
        if create:
            return []
        raise ProtocolError(400, "an empty JSON array appends nothing")
    return [(None, ",".join(bytes(message).decode() for message in messages))]


def first_part(event: StreamEvent, content_type: str, count: int) -> tuple[str | None, str]:
    """The first ``count`` messages (JSON) or bytes (else) of an append, as an event's name and data; 400 if
    it has fewer (a fork's ``Stream-Fork-Sub-Offset``)."""
    if is_json(content_type):
        messages = msgspec.json.decode(f"[{event.data}]", type=list[msgspec.Raw])
        if count > len(messages):
            raise ProtocolError(
                400, f"Stream-Fork-Sub-Offset {count} is past the append's {len(messages)} messages"
            )
        return None, ",".join(bytes(message).decode() for message in messages[:count])
    data = _bytes_of(event)
    if count > len(data):
        raise ProtocolError(400, f"Stream-Fork-Sub-Offset {count} is past the append's {len(data)} bytes")
    return events_of(data[:count], content_type, create=True)[0]


def _bytes_of(event: StreamEvent) -> bytes:
    return event.data.encode("latin-1") if event.event == BYTES else event.data.encode()


def body_of(events: Iterable[StreamEvent], content_type: str) -> bytes:
    """The bytes of a read: the data of ``events`` in order (for JSON, the messages in one array)."""
    if is_json(content_type):
        return b"[" + b",".join(event.data.encode() for event in events) + b"]"
    return b"".join(_bytes_of(event) for event in events)


def resumable_body(events: Iterable[StreamEvent]) -> bytes:
    """A ``@resumable`` stream's events as a JSON array of messages: ``{"data": ...}`` (with ``"event"``)."""
    messages = [{"data": e.data} if e.event is None else {"event": e.event, "data": e.data} for e in events]
    return _json.encode(messages)


def resumable_status(terminal: StreamEvent) -> str:
    """The status a ``@resumable`` stream ended with, from its terminal event."""
    try:
        status = msgspec.json.decode(terminal.data).get("status")
    except (msgspec.DecodeError, AttributeError):
        return "done"
    return status if isinstance(status, str) else "done"


def is_data(event: StreamEvent) -> bool:
    return event.event != TERMINAL_EVENT


# -- SSE --


def sse_data(payload: bytes, *, text: bool) -> bytes:
    """An ``event: data`` with ``payload`` as text split into lines (CR, LF and CRLF all break a line, as
    in SSE itself, so no payload can end the event or start another), or as one base64 line. A text
    stream's bytes that are not UTF-8 (kept exactly by catch-up reads) cannot be SSE text: they are sent
    as U+FFFD."""
    if not text:
        return b"event: data\ndata:" + base64.b64encode(payload) + b"\n\n"
    # A reader drops one space after "data:": a line that starts with a space gets one more.
    lines = (
        f"data: {line}\n" if line.startswith(" ") else f"data:{line}\n"
        for line in _LINE_BREAK.split(payload.decode(errors="replace"))
    )
    out = ["event: data\n", *lines, "\n"]
    return "".join(out).encode()


def sse_control(fields: Mapping[str, object]) -> bytes:
    return b"event: control\ndata:" + _json.encode(fields) + b"\n\n"
