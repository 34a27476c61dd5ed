"""The web tier of ``test_workers.py``: streams produced by job-queue workers, not by the web process.

Run by uvicorn (``uvicorn _support.worker_app:app --app-dir tests``), and by litestar-saq's CLI as the
SAQ worker's app (``litestar --app-dir tests --app _support.worker_app:app workers run``). Configured by
environment variables: ``E2E_REDIS_URL``, ``E2E_KEY_PREFIX``, ``E2E_SAQ_QUEUE``, ``E2E_CELERY_QUEUE``, and
``E2E_LEASE`` (the plugin's lease, default 10 s; ``lease=`` of a request overrides it for its stream).

- ``POST /chat?queue=saq|celery&n=&interval=&lease=``: opens a stream, enqueues the job that writes it,
  and answers with the stream (SSE);
- ``POST /streams?lease=``: opens a stream for a writer the caller runs itself, and answers its id;
- the plugin's ``GET`` and ``DELETE /resumable/streams/{id}`` resume and cancel any of them.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import anyio
from litestar import Litestar, Response, get, post
from litestar.exceptions import ValidationException
from litestar_saq import SAQConfig, SAQPlugin, TaskQueues

from _support import celery_worker, jobs, saq_worker
from litestar_resumable import RedisStreamStore, ResumablePlugin

plugin = ResumablePlugin(
    store=RedisStreamStore.from_url(jobs.REDIS_URL, key_prefix=jobs.KEY_PREFIX),
    lease=float(os.environ.get("E2E_LEASE", "10")),
    shutdown_grace=float(os.environ.get("E2E_SHUTDOWN_GRACE", "1")),
)


async def _enqueue(queue: str, task_queues: TaskQueues, job: dict[str, Any]) -> None:
    if queue == "saq":
        await task_queues.get(saq_worker.QUEUE).enqueue("answer", timeout=0, **job)
    elif queue == "celery":
        # kombu's publish blocks: off the event loop with it
        await anyio.to_thread.run_sync(functools.partial(celery_worker.answer.apply_async, kwargs=job))
    else:
        raise ValidationException(f"unknown queue {queue!r}")


@post("/chat")
async def chat(
    task_queues: TaskQueues,
    queue: str = "saq",
    n: int = 100,
    interval: float = 0.025,
    lease: float | None = None,
) -> Response[Any]:
    """Open a stream, have a worker of ``queue`` write the model's answer into it, and follow it."""
    stream_id = await plugin.open_stream(lease=lease)
    await _enqueue(queue, task_queues, {"stream_id": stream_id, "n": n, "interval": interval})
    return await plugin.stream_response(stream_id)


@post("/streams")
async def open_stream(lease: float | None = None) -> dict[str, str]:
    """Open a stream for a writer the caller runs (a thread of its own) and say its id."""
    return {"stream_id": await plugin.open_stream(lease=lease)}


@get("/pid", sync_to_thread=False)
def pid() -> int:
    """This process's id: the servers' readiness check."""
    return os.getpid()


app = Litestar(
    [chat, open_stream, pid],
    plugins=[plugin, SAQPlugin(SAQConfig(queue_configs=[saq_worker.queue_config()]))],
)
