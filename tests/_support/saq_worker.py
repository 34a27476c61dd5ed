"""The SAQ side of ``test_workers.py``: the queue's settings, its job, and the worker's startup and shutdown.

The web app (``worker_app.py``) configures litestar-saq with :func:`queue_config`, and the worker is
litestar-saq's own CLI on that app: ``litestar --app-dir tests --app _support.worker_app:app workers run``.
The queue's name comes from ``E2E_SAQ_QUEUE``, so each test session has a queue of its own.
"""

from __future__ import annotations

import os
from typing import Any

import redis.asyncio as aioredis
from litestar_saq import QueueConfig

from _support import jobs
from litestar_resumable import RedisStreamStore

QUEUE = os.environ.get("E2E_SAQ_QUEUE", "resumable-workers")


async def answer(ctx: Any, *, stream_id: str, n: int, interval: float) -> None:
    """The job: stream ``n`` tokens of the fake model to ``stream_id``."""
    store, reports = ctx["resumable_store"], ctx["reports"]
    await jobs.answer(store, reports, prefix=jobs.KEY_PREFIX, stream_id=stream_id, n=n, interval=interval)


async def startup(ctx: Any) -> None:
    ctx["resumable_store"] = RedisStreamStore.from_url(jobs.REDIS_URL, key_prefix=jobs.KEY_PREFIX)
    ctx["reports"] = aioredis.from_url(jobs.REDIS_URL)
    await ctx["reports"].lpush(jobs.ready_key(jobs.KEY_PREFIX, "saq"), os.getpid())


async def shutdown(ctx: Any) -> None:
    await ctx["resumable_store"].close()
    await ctx["reports"].aclose()


def queue_config() -> QueueConfig:
    return QueueConfig(
        dsn=jobs.REDIS_URL,
        name=QUEUE,
        tasks=[answer],
        startup=startup,
        shutdown=shutdown,
        concurrency=4,
    )
