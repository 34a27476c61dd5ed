"""The example's job queue worker: ``python -m example_app.worker`` runs the answers that the web app hands
to SAQ when it runs with ``GENERATE_IN=worker``.

The web app opens each answer's stream (``plugin.open_stream``) and enqueues the job ``answer`` with the
stream's id as the job's key; a job here takes the stream over with a ``StreamWriter`` and writes the
model's answer into it, in the format the stream was opened with (the library's SSE for the page, the AI
SDK's UI message stream for ``POST /api/chat``). The stream lives in Redis, so the web process that opened
it may stop meanwhile: its clients reconnect to any web process and read on.

Environment: ``REDIS_URL`` (required), ``REDIS_KEY_PREFIX`` and ``SAQ_QUEUE`` as the web app's,
``WORKER_SHUTDOWN_GRACE``, and the model's variables (settings.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from litestar_saq import QueueConfig, SAQConfig, SAQPlugin, TaskQueues, Worker

from example_app.settings import (
    Model,
    model_from_env,
    queue_name,
    shutdown_grace,
    store_from_env,
    worker_redis_url,
)
from litestar_resumable import StreamClosedError, StreamWriter

logger = logging.getLogger("example_app.worker")

JOB_TIMEOUT = 600
"""Seconds SAQ lets one answer run (SAQ's default, 10 s, is shorter than many answers). Past it SAQ cancels
the job, and the stream ends ``interrupted``."""


async def answer(ctx: dict[str, Any], *, stream_id: str, prompt: str, text_only: bool = False) -> str:
    """Write the model's answer to ``prompt`` into the stream ``stream_id``; ``text_only`` for the AI SDK's
    stream (text deltas, as its route yields them), else the model's ``{"text": ...}`` items."""
    items = _items(ctx["model"](prompt), text_only=text_only)
    try:
        async with StreamWriter(ctx["store"], stream_id) as writer:
            await _write_until_cancelled(writer, items)
    except StreamClosedError as exc:
        # The claim was refused: the stream has ended (cancelled before this job ran, or interrupted after
        # a worker died with it) or another attempt of this job has it. A retried job has nothing to do.
        logger.info("%s", exc)
        return "nothing to write"
    return "cancelled" if writer.cancelled else "written"


async def _items(deltas: AsyncIterator[dict[str, str]], *, text_only: bool) -> AsyncIterator[Any]:
    async with contextlib.aclosing(deltas):  # an OpenAI stream's request is closed when we stop
        async for delta in deltas:
            if not text_only:
                yield delta
            elif "text" in delta:
                yield delta["text"]


async def _write_until_cancelled(writer: StreamWriter, items: AsyncIterator[Any]) -> None:
    """Write every item, and stop the model as soon as the stream is cancelled (from any web process),
    not at its next item: a real model may think for seconds, and its tokens are paid for."""

    async def write_all() -> None:
        async with contextlib.aclosing(items):
            async for item in items:
                await writer.write(item)

    writing = asyncio.create_task(write_all())
    cancelled = asyncio.create_task(writer.wait_cancelled())
    try:
        await asyncio.wait({writing, cancelled}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        writing.cancel()
        cancelled.cancel()
        await asyncio.gather(writing, cancelled, return_exceptions=True)
    if not writing.cancelled():
        writing.result()  # the model's error, if it failed: the stream ends "error"


async def startup(ctx: dict[str, Any]) -> None:
    ctx["store"] = store_from_env()  # a RedisStreamStore: REDIS_URL is set in worker mode
    ctx["model"] = model_from_env()
    logger.info("example worker: taking answers from the SAQ queue %r", queue_name())


async def shutdown(ctx: dict[str, Any]) -> None:
    model: Model = ctx["model"]
    if hasattr(model, "aclose"):
        await model.aclose()
    await ctx["store"].close()


def saq_plugin() -> SAQPlugin:
    """The queue of answers: the web app enqueues on it (``task_queues``), and this worker runs it."""
    queue = QueueConfig(
        dsn=worker_redis_url(),
        name=queue_name(),
        tasks=[answer],
        startup=[startup],
        shutdown=[shutdown],
        shutdown_grace_period_s=shutdown_grace(),
    )
    return SAQPlugin(SAQConfig(queue_configs=[queue]))


async def enqueue_answer(task_queues: TaskQueues, stream_id: str, prompt: str, *, text_only: bool) -> None:
    """The web app's side: have a worker write the answer into the stream it opened. The stream id is the
    job's key, so a stream has one job (SAQ ignores a second enqueue of it)."""
    queue = task_queues.get(queue_name())
    await queue.enqueue(
        "answer", key=stream_id, timeout=JOB_TIMEOUT, stream_id=stream_id, prompt=prompt, text_only=text_only
    )


async def run(worker: Worker) -> None:
    """Run the worker until SIGINT or SIGTERM (SAQ's own signal handlers), as ``saq`` itself does."""
    await worker.queue.connect()
    try:
        await worker.start()
    finally:
        await worker.queue.disconnect()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        plugin = saq_plugin()
    except RuntimeError as exc:
        raise SystemExit(f"python -m example_app.worker: {exc}") from None
    asyncio.run(run(plugin.get_workers()[queue_name()]))


if __name__ == "__main__":
    main()
