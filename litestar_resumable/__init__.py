"""Resumable Server-Sent Event streams for Litestar.

Put ``@resumable`` under the route decorator of a streaming handler and add :class:`ResumablePlugin` to the
app: the handler then runs to its end whatever its clients do, every event gets an id, and clients resume
with ``Last-Event-ID`` on the same URL or read any stream at ``GET /resumable/streams/{stream_id}``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar_resumable._errors import (
    KeyConflictError,
    ResumableError,
    StoreUnavailableError,
    StreamClosedError,
    StreamExistsError,
    StreamLimitError,
)
from litestar_resumable._events import StreamEvent, StreamInfo, StreamStatus, TerminalStatus
from litestar_resumable._format import ItemEncoder, StreamFormat
from litestar_resumable._generation_end import GenerationEnd
from litestar_resumable._options import RouteOptions, StreamOptions
from litestar_resumable._plugin import ResumablePlugin
from litestar_resumable._route import resumable
from litestar_resumable._store.base import StreamStore, StreamWatch
from litestar_resumable._store.memory import MemoryStreamStore
from litestar_resumable._writer import StreamWriter

if TYPE_CHECKING:
    from litestar_resumable._store.redis import RedisStreamStore
    from litestar_resumable._sync_writer import SyncStreamWriter

__all__ = (
    "GenerationEnd",
    "ItemEncoder",
    "KeyConflictError",
    "MemoryStreamStore",
    "RedisStreamStore",
    "ResumableError",
    "ResumablePlugin",
    "RouteOptions",
    "StoreUnavailableError",
    "StreamClosedError",
    "StreamEvent",
    "StreamExistsError",
    "StreamFormat",
    "StreamInfo",
    "StreamLimitError",
    "StreamOptions",
    "StreamStatus",
    "StreamStore",
    "StreamWatch",
    "StreamWriter",
    "SyncStreamWriter",
    "TerminalStatus",
    "resumable",
)


def __getattr__(name: str) -> Any:
    # redis is an optional dependency: import it only when its store or sync writer is asked for.
    if name == "RedisStreamStore":
        from litestar_resumable._store.redis import RedisStreamStore  # noqa: PLC0415

        return RedisStreamStore
    if name == "SyncStreamWriter":
        from litestar_resumable._sync_writer import SyncStreamWriter  # noqa: PLC0415

        return SyncStreamWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
