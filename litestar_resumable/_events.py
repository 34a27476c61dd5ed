"""What a stream holds: events with positions, and how they go on the wire.

A stored event is the text of one SSE event (its ``event`` name and ``data``) at a position. The wire
id (``<stream id>.<position>``) is derived when an event is sent, never stored, so the store holds each
event once whatever the number of readers.

The terminal event is an ordinary stored event named ``end`` whose data is JSON with a ``status``.
Handlers may not use that name themselves, so "the event named end" and "the terminal event" are the
same thing everywhere.

Lines are separated with ``\\n``. Data containing CR, LF or CRLF is split into several ``data:`` lines,
as the SSE specification asks; a browser joins them back with LF.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
from litestar.response import ServerSentEventMessage

__all__ = (
    "OPENED_ROUTE",
    "TERMINAL_EVENT",
    "StreamEvent",
    "StreamInfo",
    "StreamStatus",
    "TerminalStatus",
    "encode_item",
    "encode_sse",
    "terminal_data",
    "utf8_len",
)

StreamStatus = Literal["running", "done", "error", "cancelled", "interrupted"]
TerminalStatus = Literal["done", "error", "cancelled", "interrupted"]
TERMINAL_EVENT = "end"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_json_encoder = msgspec.json.Encoder()


def utf8_len(text: str) -> int:
    """Bytes of ``text`` in UTF-8; no copy for ASCII text (``isascii`` is a flag lookup in CPython)."""
    return len(text) if text.isascii() else len(text.encode())


def terminal_data(status: TerminalStatus, message: str | None = None) -> str:
    """The data of a terminal event: ``{"status": ...}``, with ``"message"`` when there is one."""
    body: dict[str, str] = {"status": status}
    if message is not None:
        body["message"] = message
    return _json_encoder.encode(body).decode()


class StreamEvent(msgspec.Struct, frozen=True, gc=False):
    """One stored event: its position in the stream, its text and its optional SSE event name."""

    position: int
    data: str
    event: str | None = None

    @classmethod
    def terminal(cls, position: int, status: TerminalStatus, message: str | None = None) -> StreamEvent:
        """The terminal event at ``position``: what a store writes when a stream ends."""
        return cls(position, terminal_data(status, message), TERMINAL_EVENT)

    @property
    def is_terminal(self) -> bool:
        return self.event == TERMINAL_EVENT

    @property
    def nbytes(self) -> int:
        """UTF-8 bytes of the data: what byte limits and buffers count."""
        return utf8_len(self.data)


OPENED_ROUTE = "-"
"""The route recorded for streams opened with ``ResumablePlugin.open_stream``: no route of the app, so only
the resume route (and ``stream_response``) serve them, with the plugin's default options."""


class StreamInfo(msgspec.Struct, frozen=True):
    """What a store knows about a stream besides its events."""

    stream_id: str
    status: StreamStatus
    last_position: int
    """Position of the newest stored event (the terminal one once the stream has ended); 0 when empty."""
    route: str = ""
    """The id of the route that started the stream (``-`` for streams opened outside a route)."""
    key: str | None = None
    owner: str | None = None
    """Who started the stream, as the route's ``owner`` callable said; None when routes have no owners."""
    format: str = "sse"
    """The name of the :class:`StreamFormat` its events are rendered with."""
    lease: float = 0.0
    """Seconds of the lease its writer holds and renews (as given to ``create``)."""

    @property
    def is_running(self) -> bool:
        return self.status == "running"


def encode_item(item: Any) -> tuple[str | None, str]:
    """Turn one yielded item into an ``(event name, data)`` pair, or raise ``TypeError``/``ValueError``."""
    if isinstance(item, str):
        return None, item
    if isinstance(item, bytes):
        return None, item.decode()
    if isinstance(item, ServerSentEventMessage):
        event = item.event or None
        if event is not None and (event == TERMINAL_EVENT or _LINE_BREAK.search(event)):
            raise ValueError(
                f"SSE event name {event!r} is not allowed: {TERMINAL_EVENT!r} is reserved for the terminal "
                "event and names cannot contain line breaks"
            )
        data = item.data
        if data is None:
            text = ""
        elif isinstance(data, bytes):
            text = data.decode()
        else:
            text = str(data)
        return event, text
    return None, _json_encoder.encode(item).decode()


def encode_sse(stream_id: str | None, events: list[StreamEvent]) -> bytes:
    """Encode events as SSE text, each with its ``id:`` unless ``stream_id`` is None."""
    out: list[str] = []
    for event in events:
        if stream_id is not None:
            out.append(f"id: {stream_id}.{event.position}\n")
        if event.event is not None:
            out.append(f"event: {event.event}\n")
        data = event.data
        if "\n" in data or "\r" in data:
            out.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
        else:
            out.append(f"data: {data}\n")
        out.append("\n")
    return "".join(out).encode()
