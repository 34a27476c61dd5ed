"""Formats: how a route's items become stored events, and stored events become bytes on the wire.

The default is the library's own SSE: every item one event with an ``id:``, the terminal event
``event: end``. Another protocol (the AI SDK's UI message stream, say) supplies its own format: events it
stores at the start and before the end, its own item encoding, and its own rendering, in particular of
the terminal event, which the store always keeps as ``end`` + JSON status so that every reader on every
worker knows where a stream ends.

A stream records its format's ``name``; a follower on any worker renders the stream with the format of
that name, so streams written elsewhere (another worker, a job queue) read the same as a route's own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, ClassVar

from litestar_resumable._events import encode_item, encode_sse

if TYPE_CHECKING:
    from collections.abc import Mapping

    from litestar_resumable._events import StreamEvent

__all__ = ("Encoded", "ItemEncoder", "StreamFormat", "format_named")

Encoded = list[tuple[str | None, str]]


class ItemEncoder:
    """Encodes one stream's items; it may keep state between them (an open text part, say)."""

    def opening(self) -> Encoded:
        """Events stored before the first item."""
        return []

    def encode(self, item: Any) -> Encoded:
        """The ``(event name, data)`` pairs of one yielded item."""
        return [encode_item(item)]

    def closing(self) -> Encoded:
        """Events stored after the last item, when the generator ends by itself (done or failed)."""
        return []


class StreamFormat:
    """The library's own SSE: one event per item, each with an ``id:``; the terminal event ``end``.

    A subclass gives a ``name`` of its own. Formats are known by name in every process that imports them,
    so a writer elsewhere (a worker) and a reader can find a stream's format from its name alone.
    """

    name: ClassVar[str] = "sse"
    """Recorded with every stream, so that any worker renders it with the same format."""
    headers: ClassVar[Mapping[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _KNOWN.setdefault(cls.name, cls)

    def encoder(self, stream_id: str) -> ItemEncoder:  # noqa: ARG002 - formats that name their messages use it
        return ItemEncoder()

    def render(self, stream_id: str, events: list[StreamEvent]) -> bytes:
        return encode_sse(stream_id, events)

    def render_lost(self, message: str) -> bytes:
        """The last words of a follower whose store, or stream, is gone: a terminal event that is not
        stored, so it has no ``id:`` and a client's ``Last-Event-ID`` stays on the last event it got."""
        data = encode_item({"status": "interrupted", "message": message})[1]
        return f"event: end\ndata: {data}\n\n".encode()


_KNOWN: dict[str, type[StreamFormat]] = {StreamFormat.name: StreamFormat}
_BUILT_IN = {"ai-sdk-ui-message-stream-v1": "litestar_resumable.ai_sdk"}  # imported when first named


def format_named(name: str) -> StreamFormat | None:
    """A format of this name, made with no arguments (a format that needs some must be passed as such);
    None if no imported module defines it."""
    if name not in _KNOWN and name in _BUILT_IN:
        importlib.import_module(_BUILT_IN[name])
    known = _KNOWN.get(name)
    return None if known is None else known()
