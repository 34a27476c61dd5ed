"""The example app: a chat page whose answer survives reloads, drops and shared links.

Run it with ``python -m example_app`` (or ``uvicorn example_app.app:app``). By default it keeps streams
in memory and answers with a built-in fake model, so it needs no server and no key. Environment:

- ``REDIS_URL``: keep streams in Redis, so several processes serve the same chats (keys start with
  ``REDIS_KEY_PREFIX``, default ``example``);
- ``OPENAI_API_KEY`` (with ``OPENAI_BASE_URL`` and ``OPENAI_MODEL``, default ``gpt-4o-mini``): answer
  with real streaming chat completions through the ``openai`` SDK;
- ``FAKE_TOKENS_PER_SECOND``: the fake model's pace (default 45).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from litestar import Litestar, MediaType, Request, Response, delete, get, post

from example_app.fake_model import fake_answer
from litestar_resumable import MemoryStreamStore, RedisStreamStore, ResumablePlugin, StreamStore, resumable
from litestar_resumable.ai_sdk import UIMessageStream, chat_key, resume_chat

Model = Callable[[str], AsyncIterator[dict[str, str]]]

_PAGE = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")


def store_from_env() -> StreamStore:
    url = os.environ.get("REDIS_URL")
    if not url:
        return MemoryStreamStore()
    return RedisStreamStore.from_url(url, key_prefix=os.environ.get("REDIS_KEY_PREFIX", "example"))


def model_from_env() -> Model:
    """The OpenAI model when ``OPENAI_API_KEY`` is set, else the fake one."""
    if os.environ.get("OPENAI_API_KEY"):
        from openai import AsyncOpenAI  # noqa: PLC0415 - only needed in this mode

        from litestar_resumable.openai import chat_completion_deltas  # noqa: PLC0415

        client = AsyncOpenAI()  # reads OPENAI_API_KEY and OPENAI_BASE_URL
        model_name = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")

        def openai_model(prompt: str) -> AsyncIterator[dict[str, str]]:
            messages = [{"role": "user", "content": prompt}]
            return chat_completion_deltas(client, model=model_name, messages=messages)  # type: ignore[arg-type]

        openai_model.aclose = client.close  # type: ignore[attr-defined] # closed with the app
        return openai_model

    tokens_per_second = float(os.environ.get("FAKE_TOKENS_PER_SECOND", "45"))

    async def fake_model(prompt: str) -> AsyncIterator[dict[str, str]]:
        async for delta in fake_answer(prompt, tokens_per_second=tokens_per_second):
            yield {"text": delta}

    return fake_model


def create_app(
    *, store: StreamStore | None = None, model: Model | None = None, retry: int = 1000
) -> Litestar:
    answer = model or model_from_env()
    plugin = ResumablePlugin(store if store is not None else store_from_env(), retry=retry)

    @get("/", media_type=MediaType.HTML, sync_to_thread=False)
    def page() -> str:
        return _PAGE

    @get("/api/generate")
    @resumable(key="chat_id")
    async def generate(prompt: str, chat_id: str | None = None) -> AsyncIterator[dict[str, str]]:  # noqa: ARG001 - the key
        """Stream the answer to ``prompt``: ``{"text": delta}`` events; one running answer per chat (the
        page always names its chat; a request without ``chat_id`` is a one-off answer)."""
        async for item in answer(prompt):
            yield item

    @get("/api/chats/{chat_id:str}/active")
    async def active(chat_id: str) -> dict[str, str | None]:
        """The chat's running answer, so a reloaded page or a second tab finds it."""
        return {"stream_id": await plugin.active_stream_id(chat_id)}

    closers = [answer.aclose] if hasattr(answer, "aclose") else []
    return Litestar(
        [page, generate, active, *_ai_sdk_routes(plugin, answer)],
        plugins=[plugin],
        on_shutdown=closers,
    )


def _ai_sdk_routes(plugin: ResumablePlugin, answer: Model) -> list[Any]:
    """The same answers for a Vercel AI SDK front end: useChat({ resume: true }) with DefaultChatTransport."""

    @post("/api/chat")
    @resumable(key=chat_key, format=UIMessageStream())
    async def ai_sdk_chat(data: dict[str, Any]) -> AsyncIterator[str]:
        """Start an answer to the chat's last user message (the SDK's body: id, messages, trigger)."""
        async for item in answer(_last_user_text(data.get("messages", []))):
            if "text" in item:
                yield item["text"]

    @get("/api/chat/{chat_id:str}/stream")
    async def ai_sdk_resume(chat_id: str, request: Request[Any, Any, Any]) -> Response[Any]:
        """The SDK's reconnect on mount: 204, or the running answer from its start."""
        return await resume_chat(plugin, chat_id, request)

    @delete("/api/chat/{chat_id:str}/stream", status_code=204)
    async def ai_sdk_stop(chat_id: str) -> None:
        """Stop the chat's running answer."""
        stream_id = await plugin.active_stream_id(chat_id)
        if stream_id is not None:
            await plugin.cancel(stream_id)

    return [ai_sdk_chat, ai_sdk_resume, ai_sdk_stop]


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return "".join(p.get("text", "") for p in message.get("parts", []) if p.get("type") == "text")
    return ""


app = create_app()
