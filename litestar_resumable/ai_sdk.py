"""The Vercel AI SDK's UI message stream protocol (v1), for ``useChat({ resume: true })`` front ends.

    from litestar_resumable.ai_sdk import UIMessageStream, chat_key, resume_chat

    @post("/api/chat")
    @resumable(key=chat_key, format=UIMessageStream())
    async def chat(data: dict[str, Any]) -> AsyncIterator[str | dict[str, Any]]:
        async for delta in model(data["messages"]):
            yield delta                      # text, wrapped into text-start / text-delta / text-end

    @get("/api/chat/{chat_id:str}/stream")
    async def resume(chat_id: str, request: Request) -> Response:
        return await resume_chat(plugin, chat_id, request)   # 204, or the running answer from its start

Every stored event is one UI message chunk (``data: {json}``): a ``start`` chunk with a stable
``messageId``, then the handler's text wrapped into text parts, or chunks it yields itself (``reasoning-*``,
``tool-*``, ``data-*``, ... as dicts with a ``type``). The terminal event goes on the wire in the protocol's
own terms, never as ``event: end``, because the SDK validates every ``data:`` line against its schema:
``finish`` when done, ``abort`` when cancelled, ``error`` (with ``errorText``) when failed or interrupted;
then ``data: [DONE]``. Events keep their ``id:`` lines, which the SDK ignores and which still let a client
resume with ``Last-Event-ID``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Response

from litestar_resumable._format import ItemEncoder, StreamFormat

if TYPE_CHECKING:
    from litestar import Request

    from litestar_resumable._events import StreamEvent
    from litestar_resumable._plugin import ResumablePlugin

__all__ = ("UIMessageStream", "chat_key", "resume_chat")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.decode
_DONE = b"data: [DONE]\n\n"
_ERROR_TEXT = {
    "error": "The answer failed.",
    "interrupted": "The answer was interrupted: the server producing it stopped.",
}


def _chunk(**fields: Any) -> tuple[str | None, str]:
    return None, _encode(fields).decode()


class _UIMessageEncoder(ItemEncoder):
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.open_text: str | None = None
        self.parts = 0

    def opening(self) -> list[tuple[str | None, str]]:
        return [_chunk(type="start", messageId=self.message_id)]

    def encode(self, item: Any) -> list[tuple[str | None, str]]:
        out: list[tuple[str | None, str]] = []
        if isinstance(item, str):
            if self.open_text is None:
                self.parts += 1
                self.open_text = f"text-{self.parts}"
                out.append(_chunk(type="text-start", id=self.open_text))
            out.append(_chunk(type="text-delta", id=self.open_text, delta=item))
            return out
        part = msgspec.to_builtins(item)
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise TypeError(
                "a UIMessageStream handler yields text (str) or UI message chunks (dicts with a 'type'), "
                f"not {type(item).__name__}"
            )
        if not part["type"].startswith("text-"):
            out.extend(self.closing())
        out.append((None, _encode(part).decode()))
        return out

    def closing(self) -> list[tuple[str | None, str]]:
        if self.open_text is None:
            return []
        text_id, self.open_text = self.open_text, None
        return [_chunk(type="text-end", id=text_id)]


class UIMessageStream(StreamFormat):
    """The AI SDK's UI message stream protocol, v1 (``x-vercel-ai-ui-message-stream: v1``)."""

    name = "ai-sdk-ui-message-stream-v1"
    headers = {"x-vercel-ai-ui-message-stream": "v1"}  # noqa: RUF012 - read-only, shared by design

    def encoder(self, stream_id: str) -> ItemEncoder:
        return _UIMessageEncoder(message_id=f"msg-{stream_id}")

    def render(self, stream_id: str, events: list[StreamEvent]) -> bytes:
        out: list[bytes] = []
        for event in events:
            data = self._terminal_chunk(event.data) if event.is_terminal else event.data
            out.append(f"id: {stream_id}.{event.position}\ndata: {data}\n\n".encode())
            if event.is_terminal:
                out.append(_DONE)
        return b"".join(out)

    def render_lost(self, message: str) -> bytes:
        error_text = message[:1].upper() + message[1:] + "."
        return f"data: {_encode({'type': 'error', 'errorText': error_text}).decode()}\n\n".encode() + _DONE

    @staticmethod
    def _terminal_chunk(terminal: str) -> str:
        ending = _decode(terminal)
        status = ending.get("status")
        if status == "done":
            return '{"type":"finish"}'
        if status == "cancelled":
            return '{"type":"abort"}'
        error_text = ending.get("message") or _ERROR_TEXT.get(status, "The answer failed.")
        return _encode({"type": "error", "errorText": error_text}).decode()


def chat_key(kwargs: dict[str, Any]) -> str:
    """The chat id of an AI SDK request (``id`` in the JSON body), for ``@resumable(key=chat_key)``."""
    return str(kwargs["data"]["id"])


async def resume_chat(
    plugin: ResumablePlugin, chat_id: str, request: Request[Any, Any, Any], *, owner: str | None = None
) -> Response[Any]:
    """Answer ``GET {api}/{chat_id}/stream``: 204 without a running generation, else the generation
    from its ``start`` chunk, or after ``Last-Event-ID`` if sent.

    The SDK's reconnect carries no position, so the answer starts at ``start``: right for a fresh
    ``useChat`` (a reload, another tab, the resume on mount), which builds the message from nothing. An
    in-page resume after a network error (``@ai-sdk/react`` >= 2.0.x on visibilitychange) keeps the
    partial message instead, and so shows the part it had received twice (see docs/ai-sdk.md, Limits)."""
    stream_id = await plugin.active_stream_id(chat_id, owner=owner)
    if stream_id is None:
        return Response(None, status_code=204)
    last_event_id = request.headers.get("last-event-id") or None
    return await plugin.stream_response(stream_id, last_event_id=last_event_id, owner=owner)
