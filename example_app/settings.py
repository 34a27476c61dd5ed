"""What the example reads from its environment, shared by the web app (app.py) and the worker (worker.py).

- ``REDIS_URL``: keep streams in Redis, so several processes serve the same chats (keys start with
  ``REDIS_KEY_PREFIX``, default ``example``); required with ``GENERATE_IN=worker``;
- ``OPENAI_API_KEY`` (with ``OPENAI_BASE_URL`` and ``OPENAI_MODEL``, default ``gpt-4o-mini``): answer
  with real streaming chat completions through the ``openai`` SDK; else the built-in fake model, whose
  pace is ``FAKE_TOKENS_PER_SECOND`` (default 45);
- ``GENERATE_IN``: ``web`` (the default: answers run in the web process) or ``worker`` (the web process
  opens each answer's stream and enqueues a SAQ job on the queue ``SAQ_QUEUE``, default
  ``example-answers``; ``python -m example_app.worker`` runs the jobs). A stopping worker (SIGTERM,
  Ctrl+C) gives running answers ``WORKER_SHUTDOWN_GRACE`` seconds (default 10), then SAQ cancels them and
  they end ``interrupted``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import Literal

from example_app.fake_model import fake_answer
from litestar_resumable import MemoryStreamStore, RedisStreamStore, StreamStore

Model = Callable[[str], AsyncIterator[dict[str, str]]]


def redis_url() -> str | None:
    return os.environ.get("REDIS_URL") or None


def store_from_env() -> StreamStore:
    url = redis_url()
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


def generate_in_from_env() -> Literal["web", "worker"]:
    """Where answers are generated (``GENERATE_IN``); worker mode checks that ``REDIS_URL`` is set."""
    where = os.environ.get("GENERATE_IN") or "web"
    if where == "web":
        return "web"
    if where == "worker":
        worker_redis_url()
        return "worker"
    raise RuntimeError(f"GENERATE_IN must be 'web' or 'worker', not {where!r}")


def worker_redis_url() -> str:
    """``REDIS_URL``, which worker mode needs: the web processes and the worker share the streams and
    the job queue through it."""
    url = redis_url()
    if url is None:
        raise RuntimeError(
            "GENERATE_IN=worker needs REDIS_URL (redis://host:6379/0): the web app and "
            "python -m example_app.worker share the streams and the job queue through Redis"
        )
    return url


def queue_name() -> str:
    return os.environ.get("SAQ_QUEUE", "example-answers")


def shutdown_grace() -> int:
    return int(os.environ.get("WORKER_SHUTDOWN_GRACE", "10"))
