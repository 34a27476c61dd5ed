"""The Celery side of ``test_workers.py``: an app on Redis as the broker, and the task that streams an answer
with the sync writer.

    celery -A _support.celery_worker worker --pool=solo (with tests/ on PYTHONPATH)

The queue's name comes from ``E2E_CELERY_QUEUE``, and every key the broker writes starts with the test
session's key prefix (kombu's ``global_keyprefix``), so sessions never share a message. A worker says it is
ready by pushing its pid to ``jobs.ready_key(prefix, "celery")`` (the ``worker_ready`` signal).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import worker_ready
from redis import Redis

from _support import jobs

QUEUE = os.environ.get("E2E_CELERY_QUEUE", "resumable-workers")

app = Celery("resumable_workers", broker=jobs.REDIS_URL, set_as_current=False)
app.conf.update(
    broker_transport_options={"global_keyprefix": f"{jobs.KEY_PREFIX}:celery:"},
    broker_connection_retry_on_startup=True,
    task_default_queue=QUEUE,
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    worker_enable_remote_control=False,  # no pidbox fan-out exchange shared with other sessions
    worker_hijack_root_logger=False,
)


@app.task(name="answer")
def answer(stream_id: str, n: int, interval: float) -> None:
    """The task: stream ``n`` tokens of the fake model to ``stream_id``."""
    jobs.sync_answer(jobs.REDIS_URL, jobs.KEY_PREFIX, stream_id, n, interval)


@worker_ready.connect
def _ready(**_: Any) -> None:
    client = Redis.from_url(jobs.REDIS_URL)
    try:
        client.lpush(jobs.ready_key(jobs.KEY_PREFIX, "celery"), os.getpid())
    finally:
        client.close()
