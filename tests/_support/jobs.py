"""What the job-queue workers of ``test_workers.py`` run: a fake model and the jobs that stream its answer.

A job writes the stream the web tier opened (``ResumablePlugin.open_stream``) and, when it ends however
it ends, reports what it did to a Redis list (``report_key``): how many tokens its model produced, how many
events the stream took, and whether it saw the stream cancelled. A worker process says it is ready by
pushing its pid to ``ready_key``. The tests wait on both with ``BLPOP``: events, not sleeps.

Configured by environment variables, as the app servers are: ``E2E_REDIS_URL`` and ``E2E_KEY_PREFIX``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Iterator

import redis.asyncio as aioredis
from redis import Redis

from litestar_resumable import StreamStore, StreamWriter, SyncStreamWriter

REDIS_URL = os.environ.get("E2E_REDIS_URL", "redis://127.0.0.1:6379/0")
KEY_PREFIX = os.environ.get("E2E_KEY_PREFIX", "workers")


def ready_key(prefix: str, worker: str) -> str:
    """The list a worker process pushes its pid to once it takes jobs."""
    return f"{prefix}:ready:{worker}"


def report_key(prefix: str, stream_id: str) -> str:
    """The list the job of ``stream_id`` pushes its report to when it ends."""
    return f"{prefix}:job:{stream_id}"


def token(i: int) -> str:
    """The model's token ``i``: its number, so a test sees any gap or duplicate."""
    return str(i)


async def model(n: int, interval: float) -> AsyncIterator[str]:
    """``n`` tokens, token ``i`` at ``i * interval`` seconds: a steady model, whatever the writes cost."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(n):
        await asyncio.sleep(max(0.0, start + i * interval - loop.time()))
        yield token(i)


def sync_model(n: int, interval: float) -> Iterator[str]:
    """:func:`model` for a thread: a blocking client of a model API."""
    start = time.monotonic()
    for i in range(n):
        time.sleep(max(0.0, start + i * interval - time.monotonic()))
        yield token(i)


class Report:
    """What a job did, pushed to ``report_key`` when it ends."""

    def __init__(self) -> None:
        self.generated = 0

    def ended(self, writer: StreamWriter | SyncStreamWriter | None, error: BaseException | None) -> str:
        written = None if writer is None else writer.events
        cancelled = writer is not None and writer.cancelled
        outcome = "cancelled" if cancelled else "error" if error is not None else "done"
        return json.dumps(
            {
                "pid": os.getpid(),
                "generated": self.generated,
                "written": written,
                "cancelled": cancelled,
                "outcome": outcome,
                "error": None if error is None else repr(error),
                "ended_at": time.time(),  # wall clock: the tests compare it with their own, on this machine
            }
        )


async def answer(
    store: StreamStore, reports: aioredis.Redis, *, prefix: str, stream_id: str, n: int, interval: float
) -> None:
    """An async worker's job: stream the model's answer, and stop the model as soon as the stream is
    cancelled (the model's next token is raced against ``wait_cancelled``)."""
    report = Report()
    writer: StreamWriter | None = None
    error: BaseException | None = None

    async def generate(writer: StreamWriter) -> None:
        async for item in model(n, interval):
            report.generated += 1
            await writer.write(item)

    try:
        async with StreamWriter(store, stream_id) as writer:
            generation = asyncio.create_task(generate(writer))
            cancelled = asyncio.create_task(writer.wait_cancelled())
            try:
                await asyncio.wait({generation, cancelled}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                generation.cancel()  # the model is called no more
                cancelled.cancel()
                await asyncio.gather(generation, cancelled, return_exceptions=True)
            if not generation.cancelled():
                generation.result()  # its error, if any (a StreamClosedError after a cancel ends nothing)
    except Exception as exc:
        error = exc
        raise
    finally:
        await reports.lpush(report_key(prefix, stream_id), report.ended(writer, error))


def sync_answer(url: str, prefix: str, stream_id: str, n: int, interval: float) -> None:
    """A sync worker's job (a Celery task, a thread): stream the model's answer, and stop calling the model
    once the stream is cancelled."""
    report = Report()
    writer: SyncStreamWriter | None = None
    error: BaseException | None = None
    try:
        with SyncStreamWriter.from_url(url, stream_id, key_prefix=prefix) as writer:
            for item in sync_model(n, interval):
                report.generated += 1
                writer.write(item)  # raises StreamClosedError once the stream is known to be cancelled
                if writer.cancelled:
                    break  # heard of it meanwhile: ask the model for nothing more
    except Exception as exc:
        error = exc
        raise
    finally:
        client = Redis.from_url(url)
        try:
            client.lpush(report_key(prefix, stream_id), report.ended(writer, error))
        finally:
            client.close()
