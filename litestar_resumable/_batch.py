"""What a writer has yet to store: its events in order, bounded in bytes, and the stream's limits.

Shared by the async :class:`StreamWriter` and the :class:`SyncStreamWriter`, so both number, encode, check
and batch events the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar_resumable._errors import StreamLimitError
from litestar_resumable._events import StreamEvent

if TYPE_CHECKING:
    from litestar_resumable._format import Encoded, ItemEncoder
    from litestar_resumable._options import StreamOptions

__all__ = ("Pending",)


class Pending:
    """A writer's events not yet stored, numbered from position 1 on."""

    __slots__ = ("bytes", "encoder", "events", "next_position", "options")

    def __init__(self, encoder: ItemEncoder, options: StreamOptions) -> None:
        self.encoder = encoder
        self.options = options
        self.events: list[StreamEvent] = []
        self.bytes = 0
        self.next_position = 1

    @property
    def full(self) -> bool:
        """``max_batch_bytes`` are waiting: a writer waits for the store before it queues more."""
        return self.bytes >= self.options.max_batch_bytes

    def opening(self) -> bool:
        return self._queue(self.encoder.opening(), limited=False)

    def item(self, item: Any) -> bool:
        """Queue an item's events; raises :class:`StreamLimitError` past a limit. True if it queued any."""
        return self._queue(self.encoder.encode(item), limited=True)

    def closing(self) -> bool:
        return self._queue(self.encoder.closing(), limited=False)

    def _queue(self, encoded: Encoded, *, limited: bool) -> bool:
        for event, data in encoded:
            stored = StreamEvent(self.next_position, data, event)
            if limited:
                self._check(stored)
            self.events.append(stored)
            self.bytes += stored.nbytes
            self.next_position += 1
        return bool(encoded)

    def _check(self, event: StreamEvent) -> None:
        if event.position > self.options.max_events:
            raise StreamLimitError(f"the stream passed max_events ({self.options.max_events})")
        if event.nbytes > self.options.max_event_bytes:
            raise StreamLimitError(
                f"an event of {event.nbytes} bytes passed max_event_bytes ({self.options.max_event_bytes})"
            )

    def take(self) -> list[StreamEvent]:
        """The next batch: as many events as fit ``max_batch_bytes`` (one at least)."""
        taken, size = 0, 0
        for event in self.events:
            if taken and size + event.nbytes > self.options.max_batch_bytes:
                break
            taken += 1
            size += event.nbytes
        batch = self.events[:taken]
        del self.events[:taken]
        self.bytes -= size
        return batch
