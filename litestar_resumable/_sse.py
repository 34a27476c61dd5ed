"""Reading Server-Sent Events as a browser does: one incremental decoder for the client and the test kit.

It follows the WHATWG rules: lines end with CRLF, LF or CR; ``:`` starts a comment; a block of fields
ends with a blank line and dispatches an event only if it had ``data``; several ``data`` lines join with
LF; one space after the colon is dropped. Unlike a browser it also says whether a block carried an
``id`` of its own (``SSEEvent.id``; ``None`` if not), which is what tests of resumable streams look at.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ("SSEDecoder", "SSEEvent")


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event."""

    id: str | None
    """The block's own ``id:`` field; None if it had none (heartbeats never do, nor a follower's
    terminal event of its own when its store is gone)."""
    event: str
    data: str
    at: float = field(default=0.0, compare=False)
    """``time.monotonic()`` when it was decoded."""

    @property
    def stream_id(self) -> str:
        if self.id is None:
            raise ValueError("this event has no id")
        return self.id.rpartition(".")[0]

    @property
    def position(self) -> int:
        if self.id is None:
            raise ValueError("this event has no id")
        return int(self.id.rpartition(".")[2])

    @property
    def is_terminal(self) -> bool:
        return self.event == "end"

    def json(self) -> Any:
        return json.loads(self.data)

    @property
    def status(self) -> str:
        """The status of a terminal event."""
        if not self.is_terminal:
            raise ValueError(f"not a terminal event: {self}")
        return str(self.json()["status"])


class SSEDecoder:
    """Feed it text as it arrives; it returns the events completed so far."""

    def __init__(self) -> None:
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self.last_event_id = ""
        """The stream's last event id so far, as a browser keeps it for ``Last-Event-ID``."""
        self.retry: int | None = None
        self.comments = 0

    def feed(self, text: str) -> list[SSEEvent]:
        buffer = self._buffer + text
        events: list[SSEEvent] = []
        start = 0
        while (cut := _line_end(buffer, start)) is not None:
            event = self._line(buffer[start : cut[0]])
            start = cut[1]
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
            self.last_event_id = value
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        event = None
        if self._data:
            event = SSEEvent(self._id, self._event or "message", "\n".join(self._data), time.monotonic())
        self._data, self._event, self._id = [], "", None
        return event


def _line_end(text: str, start: int) -> tuple[int, int] | None:
    """Where the line from ``start`` ends and the next begins; None if no line is complete yet."""
    lf = text.find("\n", start)
    cr = text.find("\r", start, lf if lf != -1 else len(text))
    if cr == -1:
        return None if lf == -1 else (lf, lf + 1)
    if cr + 1 == len(text):
        return None  # a CR at the end may be the first half of a CRLF
    return cr, cr + 2 if text[cr + 1] == "\n" else cr + 1
