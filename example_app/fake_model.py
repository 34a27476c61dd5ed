"""A built-in fake model: streams a long, varied answer at a realistic pace, no API key needed."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

_PARAGRAPHS = [
    (
        "Resumable streams keep the model's work when the page does not stay. Every token the model "
        "produces is written to a store with its position, and the browser reads from that store."
    ),
    (
        "When the tab is reloaded, the browser's EventSource reconnects with the id of the last event it "
        "saw. The server answers with exactly the events after it, so nothing is shown twice and nothing "
        "is missing."
    ),
    (
        "The generation itself runs in a task that the server owns. A closed tab, a dropped Wi-Fi link or "
        "a second viewer changes nothing for it: it runs to the end, and whoever asks later gets all of it."
    ),
    (
        "With Redis as the store, any worker can serve any reader, so a load balancer may send the "
        "reconnect anywhere. Streams expire a while after they end, so the store does not grow forever."
    ),
]


def answer_words(prompt: str) -> list[str]:
    """The fake model's answer to ``prompt``, as the pieces it streams (each word with its space)."""
    rng = random.Random(prompt)  # noqa: S311 - not for security
    paragraphs = rng.sample(_PARAGRAPHS, k=len(_PARAGRAPHS))
    text = f'You asked: "{prompt}". ' + "\n\n".join(paragraphs)
    return [word + " " for word in text.split(" ")]


async def fake_answer(prompt: str, *, tokens_per_second: float = 45.0) -> AsyncIterator[str]:
    """Yield the answer piece by piece, about ``tokens_per_second`` pieces a second, varying the pace."""
    rng = random.Random(prompt)  # noqa: S311 - not for security
    for word in answer_words(prompt):
        yield word
        await asyncio.sleep(rng.uniform(0.5, 1.5) / tokens_per_second)
