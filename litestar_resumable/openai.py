"""OpenAI chat completions as items for a ``@resumable`` handler.

    @get("/api/generate")
    @resumable(key="chat_id")
    async def generate(prompt: str, chat_id: str) -> AsyncIterator[dict[str, str]]:
        async for item in chat_completion_deltas(client, model="gpt-4o-mini", messages=[...]):
            yield item

It yields ``{"text": delta}`` for every piece of content and ends with ``{"finish_reason": reason}``. The
completion's HTTP stream is closed as soon as the generator is (a cancel, a shutdown, an error), so a
stopped generation stops costing tokens. API errors propagate: the stream ends with status ``error``.
Needs the ``openai`` extra (``pip install 'litestar-resumable[openai]'``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ("chat_completion_deltas",)


async def chat_completion_deltas(
    client: AsyncOpenAI,
    *,
    model: str,
    messages: Iterable[ChatCompletionMessageParam],
    **create: Any,
) -> AsyncIterator[dict[str, str]]:
    """Stream one chat completion (first choice) as ``{"text": ...}`` items, then its finish reason."""
    stream = await client.chat.completions.create(model=model, messages=messages, stream=True, **create)
    finish_reason = "stop"
    async with stream:
        async for chunk in stream:
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            if choice.delta.content:
                yield {"text": choice.delta.content}
            if choice.finish_reason is not None:
                finish_reason = choice.finish_reason
    yield {"finish_reason": finish_reason}
