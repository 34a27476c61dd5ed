"""The AI SDK UI message stream format: what is stored, and what goes on the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from _support.asgi import serve, within
from litestar import Litestar, Request, Response, get, post

from litestar_resumable import MemoryStreamStore, ResumablePlugin, StreamEvent, resumable
from litestar_resumable._events import terminal_data
from litestar_resumable.ai_sdk import UIMessageStream, chat_key, resume_chat


def chunks(body: str) -> list[Any]:
    """Every data: line as the SDK parses it ([DONE] kept as a string)."""
    return [
        line[6:] if line == "data: [DONE]" else msgspec.json.decode(line[6:])
        for line in body.splitlines()
        if line.startswith("data: ")
    ]


def test_text_is_wrapped_into_text_parts_and_parts_pass_through() -> None:
    encoder = UIMessageStream().encoder("S" * 22)
    stored = [*encoder.opening()]
    for item in [
        "Hel",
        "lo",
        {"type": "reasoning-start", "id": "r1"},
        "again",
        {"type": "data-weather", "data": {"t": 3}},
    ]:
        stored += encoder.encode(item)
    stored += encoder.closing()
    assert all(event is None for event, _ in stored)
    assert [msgspec.json.decode(data) for _, data in stored] == [
        {"type": "start", "messageId": "msg-" + "S" * 22},
        {"type": "text-start", "id": "text-1"},
        {"type": "text-delta", "id": "text-1", "delta": "Hel"},
        {"type": "text-delta", "id": "text-1", "delta": "lo"},
        {"type": "text-end", "id": "text-1"},
        {"type": "reasoning-start", "id": "r1"},
        {"type": "text-start", "id": "text-2"},
        {"type": "text-delta", "id": "text-2", "delta": "again"},
        {"type": "text-end", "id": "text-2"},
        {"type": "data-weather", "data": {"t": 3}},
    ]


def test_items_that_are_not_chunks_are_refused() -> None:
    encoder = UIMessageStream().encoder("S" * 22)
    with pytest.raises(TypeError, match="yields text"):
        encoder.encode(42)
    with pytest.raises(TypeError, match="yields text"):
        encoder.encode({"no": "type"})


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        ("done", None, {"type": "finish"}),
        ("cancelled", None, {"type": "abort"}),
        ("error", None, {"type": "error", "errorText": "The answer failed."}),
        ("error", "quota exceeded", {"type": "error", "errorText": "quota exceeded"}),
        (
            "interrupted",
            None,
            {"type": "error", "errorText": "The answer was interrupted: the server producing it stopped."},
        ),
    ],
)
def test_the_terminal_event_is_rendered_in_the_protocols_terms(
    status: Any, message: Any, expected: Any
) -> None:
    wire = (
        UIMessageStream().render("S" * 22, [StreamEvent(7, terminal_data(status, message), "end")]).decode()
    )
    assert wire == f"id: {'S' * 22}.7\ndata: {msgspec.json.encode(expected).decode()}\n\ndata: [DONE]\n\n"
    assert "event:" not in wire


async def test_a_chat_route_speaks_the_protocol_and_resumes_from_the_start() -> None:
    gate = asyncio.Event()

    @post("/api/chat")
    @resumable(key=chat_key, format=UIMessageStream())
    async def chat(data: dict[str, Any]) -> AsyncIterator[str]:
        yield f"hello {data['id']}"
        await gate.wait()
        yield "!"

    plugin = ResumablePlugin(MemoryStreamStore())

    @get("/api/chat/{chat_id:str}/stream")
    async def resume(chat_id: str, request: Request[Any, Any, Any]) -> Response[Any]:
        return await resume_chat(plugin, chat_id, request)

    async with serve(Litestar([chat, resume], plugins=[plugin])) as client:
        assert (await client.get("/api/chat/c1/stream")).status_code == 204
        async with client.stream("POST", "/api/chat", json={"id": "c1", "messages": []}) as started:
            assert started.status_code == 200
            assert started.headers["x-vercel-ai-ui-message-stream"] == "v1"
            lines = started.aiter_lines()
            while "hello c1" not in await within(anext(lines)):
                pass
            async with client.stream("GET", "/api/chat/c1/stream") as resumed:
                received = []
                async for line in resumed.aiter_lines():
                    received.append(line)
                    if "hello c1" in line:
                        gate.set()  # the resumer has caught up with the live answer; let it finish
        sent = chunks("\n".join(received))
        assert sent[0]["type"] == "start"  # replayed from the start: the SDK cannot resume mid-message
        assert [c.get("delta") for c in sent if isinstance(c, dict) and c["type"] == "text-delta"] == [
            "hello c1",
            "!",
        ]
        assert sent[-2:] == [{"type": "finish"}, "[DONE]"]
        assert (await client.get("/api/chat/c1/stream")).status_code == 204  # finished: nothing to resume


async def test_a_request_without_the_chat_id_is_a_400_not_a_500() -> None:
    @post("/api/chat")
    @resumable(key=chat_key, format=UIMessageStream())
    async def chat(data: dict[str, Any]) -> AsyncIterator[str]:
        yield "never"

    async with serve(Litestar([chat], plugins=[ResumablePlugin(MemoryStreamStore())])) as client:
        response = await client.post("/api/chat", json={"messages": []})
    assert response.status_code == 400
    assert response.json()["detail"] == "the request does not name this route's key (KeyError reading it)"
