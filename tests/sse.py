"""Reading SSE as a browser does, for the tests that look at the wire: events with the time they came."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    id: str | None
    event: str
    data: str
    at: float = field(default=0.0, compare=False)

    @property
    def stream_id(self) -> str:
        assert self.id is not None
        return self.id.rpartition(".")[0]

    @property
    def position(self) -> int:
        assert self.id is not None
        return int(self.id.rpartition(".")[2])

    @property
    def is_terminal(self) -> bool:
        return self.event == "end"

    @property
    def status(self) -> str:
        assert self.is_terminal, f"not a terminal event: {self}"
        return str(json.loads(self.data)["status"])


def parse_block(lines: list[str]) -> Event | None:
    """One SSE block as an event; None for blocks without data (``retry:``, ``: ping``)."""
    event_id: str | None = None
    name = "message"
    data: list[str] = []
    for line in lines:
        if line.startswith(":"):
            continue
        name_, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name_ == "id":
            event_id = value
        elif name_ == "event":
            name = value
        elif name_ == "data":
            data.append(value)
    return Event(event_id, name, "\n".join(data), time.monotonic()) if data else None


def parse_sse_text(text: str) -> list[Event]:
    """Whole events of SSE text; an unfinished last block is dropped, as a browser drops it."""
    complete = text.rpartition("\n\n")[0]
    blocks = (parse_block(block.split("\n")) for block in complete.split("\n\n"))
    return [event for event in blocks if event is not None]
