"""The store contract's durable-stream types: what the durable-stream methods of a store take and answer.

``DURABLE_FORMAT`` (the format of a durable stream), :class:`Producer` and :class:`Fork` (what an append
and a create are given), :class:`DurableStream` (what a store keeps of one besides its events),
:class:`DurableAppend` and ``AppendOutcome`` (what became of an append), and ``media_type``, how durable
streams compare content types.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from litestar_resumable._events import StreamStatus

__all__ = (
    "DURABLE_FORMAT",
    "AppendOutcome",
    "DurableAppend",
    "DurableStream",
    "Fork",
    "Producer",
    "media_type",
)

DURABLE_FORMAT = "durable-streams"
"""The format name of streams created over the Durable Streams protocol (``StreamInfo.format``)."""

AppendOutcome = Literal[
    "appended",
    "duplicate",
    "closed",
    "content_type",
    "stale_epoch",
    "epoch_restart",
    "seq_gap",
    "stream_seq",
    "deleted",
    "missing",
]
"""What became of an append to a durable stream: stored (or, with no data, the stream closed); a
producer's retry, stored already; refused because the stream is closed, because it has another content
type, because the producer's epoch is older than the stream knows (``stale_epoch``), because a new epoch
did not start at sequence 0 (``epoch_restart``), because the producer skipped a sequence number
(``seq_gap``), or because ``Stream-Seq`` did not grow (``stream_seq``); or the stream is deleted but kept
for its forks (``deleted``), or gone."""


def media_type(content_type: str) -> str:
    """The media type of a content type, lower case, without parameters: what durable streams compare."""
    return content_type.split(";", 1)[0].strip().lower()


class Producer(msgspec.Struct, frozen=True):
    """An idempotent producer's claim on one append: who writes, in which epoch, its sequence number."""

    producer_id: str
    epoch: int
    seq: int

    @property
    def tuple_text(self) -> str:
        """The claim as one string (the producer id last, so that it may hold any character)."""
        return f"{self.epoch}:{self.seq}:{self.producer_id}"


class Fork(msgspec.Struct, frozen=True):
    """What a new durable stream forks: the first ``position`` events of the stream ``source_id``."""

    source_id: str
    position: int
    spec: str
    """How the fork was asked for, kept with it so that asking again can be compared."""


class DurableStream(msgspec.Struct, frozen=True):
    """What a store keeps of a stream written over the Durable Streams protocol besides its events."""

    stream_id: str
    name: str
    content_type: str
    status: StreamStatus
    """``running`` while open; ``done`` once closed (its terminal event is the close)."""
    last_position: int
    """Position of the newest stored event: the terminal one once closed; 0 when empty."""
    owner: str | None = None
    ttl: int | None = None
    """Seconds the stream lives after its last read or write (a sliding window), if it has a TTL."""
    expires_at: float | None = None
    """When the stream expires (Unix time, seconds), if it has an absolute expiry."""
    closed_by: str | None = None
    """The :attr:`Producer.tuple_text` of the producer's append that closed the stream, if one did."""
    fork: str | None = None
    """The :attr:`Fork.spec` of the fork the stream was created as, if it was."""
    deleted: bool = False
    """Deleted while streams forked from it remained: kept (its name too) until the last of them goes."""

    @property
    def closed(self) -> bool:
        return self.status != "running"

    @property
    def tail(self) -> int:
        """Position of the newest data event (the terminal event is not data)."""
        return self.last_position - 1 if self.closed else self.last_position


class DurableAppend(msgspec.Struct, frozen=True):
    """The answer to :meth:`StreamStore.append_durable`."""

    outcome: AppendOutcome
    tail: int = 0
    """The stream's newest data position after the call (0 when ``missing``)."""
    closed: bool = False
    """Whether the stream is closed after the call."""
    producer_epoch: int | None = None
    """The producer's epoch: the accepted one, or the stream's newer one (``stale_epoch``)."""
    producer_seq: int | None = None
    """The producer's highest accepted sequence number; for ``seq_gap``, the one expected next."""
