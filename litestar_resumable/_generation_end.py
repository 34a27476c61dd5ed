"""``GenerationEnd``: a generation's end as its route's ``on_generation_end`` hook gets it.

A leaf module, so that the options (``_options``), which name it in the hook's type, need not import the
observer (``_observe``), which reports it, nor the writers, which build it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from litestar_resumable._events import StreamInfo, TerminalStatus

__all__ = ("GenerationEnd",)


@dataclass(frozen=True, kw_only=True)
class GenerationEnd:
    """A generation's end, as its ``on_generation_end`` hook gets it: who, how, and what it cost."""

    stream_id: str
    route: str
    """The route's id, as ``StreamInfo.route`` (``-`` for streams opened with ``open_stream``)."""
    status: TerminalStatus
    """How it ended: the stream's terminal status as the store has it (as written, if the store was out
    of reach at the end)."""
    message: str | None
    """The terminal event's message, if it has one."""
    events: int
    """Events this writer stored (the terminal one not counted)."""
    bytes: int
    """UTF-8 bytes of those events' data."""
    duration: float
    """Seconds from the start of writing to the end."""
    owner: str | None
    key: str | None
    """The route's key, scoped by owner as the store keeps it (``StreamInfo.key``)."""
    info: StreamInfo | None
    """The stream as the store has it after the end; None if the store was out of reach."""
