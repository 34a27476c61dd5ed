"""Streams produced from anywhere (issue 12): job-queue workers write the streams the web tier opened.

Real processes on the real Redis: the web app (``_support/worker_app.py``) under uvicorn, a SAQ worker
(litestar-saq's CLI on the same app), a Celery worker (``--pool=solo``, Redis as the broker), and a plain
thread of the test with the sync writer. ``POST /chat`` opens a stream, enqueues the job and follows the
stream; the job streams a fake model's numbered tokens at a steady pace (``_support/jobs.py``) and reports
what it did to Redis when it ends. The tests drop the client, kill the web process, kill the worker and
cancel from the web side, each mid-answer, synchronised on the events read.

What they measure (events before and after a web restart, kill → ``interrupted``, cancel → job stopped)
is printed and collected in ``/tmp/scratch/issue12_figures.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from _support.asgi import serve, within
from _support.jobs import report_key, sync_answer
from _support.reading import Reader, check_stream, follow_to_end, numbers, open_sse
from _support.servers import Server
from _support.stores import REDIS_URL, need_redis
from _support.worker_processes import CELERY_WORKER, SAQ_WORKER, WorkerProcess
from litestar import Litestar
from redis import Redis

from litestar_resumable import ResumablePlugin
from litestar_resumable.testing import SSEEvent, parse_sse

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
TOKENS = 100
INTERVAL = 0.025  # 40 tokens a second: an answer lasts 2.5 s
CUT_AT = 20  # events read before the client drops, or a process is killed, or the stream cancelled
LEASE = 1.5  # the lease of the streams whose worker is killed
QUEUES = ["saq", "celery"]
FIGURES_FILE = Path("/tmp/scratch/issue12_figures.json")  # noqa: S108 - a file for people to read


_figures: dict[str, Any] = {}


def record(name: str, **figures: Any) -> None:
    """Print a test's measurements and write this run's figures so far to ``FIGURES_FILE``."""
    print(f"[issue 12 figures] {name}: {json.dumps(figures, sort_keys=True)}")  # noqa: T201
    _figures[name] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    FIGURES_FILE.write_text(json.dumps(_figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# -- the processes: one web server and one worker of each queue for the module, restarted if killed --


@pytest.fixture(scope="module")
def env() -> Iterator[dict[str, str]]:
    """This module's Redis key prefix, SAQ queue and Celery queue; their keys are deleted afterwards."""
    need_redis()
    prefix = f"workers-{uuid.uuid4().hex[:12]}"
    yield {
        "E2E_REDIS_URL": REDIS_URL,
        "E2E_KEY_PREFIX": prefix,
        "E2E_SAQ_QUEUE": prefix,
        "E2E_CELERY_QUEUE": prefix,
    }
    client = Redis.from_url(REDIS_URL)
    try:
        for pattern in (f"{prefix}:*", f"saq:*{prefix}*"):  # ours, the broker's, and SAQ's (saq:<queue>:...)
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="module")
def module_workers(env: dict[str, str]) -> Iterator[dict[str, WorkerProcess]]:
    workers = {
        "saq": WorkerProcess("saq", SAQ_WORKER, env),
        "celery": WorkerProcess("celery", CELERY_WORKER, env),
    }
    try:
        for worker in workers.values():
            worker.start()
        for worker in workers.values():
            worker.wait_ready()
        yield workers
    finally:
        for worker in workers.values():
            worker.stop()


@pytest.fixture(scope="module")
def module_web(env: dict[str, str]) -> Iterator[Server]:
    server = Server(env, name="web", app="_support.worker_app:app")
    try:
        server.start()
        server.wait_ready()
        yield server
    finally:
        server.stop()


class Deployment:
    """The web server, the workers, a client and this module's Redis, as one test sees them."""

    def __init__(
        self, web: Server, workers: dict[str, WorkerProcess], env: dict[str, str], http: httpx.AsyncClient
    ) -> None:
        self.web = web
        self.workers = workers
        self.env = env
        self.prefix = env["E2E_KEY_PREFIX"]
        self.http = http
        self.redis = aioredis.from_url(env["E2E_REDIS_URL"])

    def resume_url(self, stream_id: str) -> str:
        """The plugin's resume (GET) and cancel (DELETE) route, on the web server as it is now."""
        return f"{self.web.url}/resumable/streams/{stream_id}"

    async def report(self, stream_id: str, timeout: float = 15.0) -> dict[str, Any]:
        """The report of the stream's job, once the job has ended."""
        popped = await within(self.redis.blpop([report_key(self.prefix, stream_id)], timeout), timeout + 5)
        assert popped is not None, f"the job of stream {stream_id} did not end within {timeout} s"
        return dict(json.loads(popped[1]))

    @contextlib.asynccontextmanager
    async def answer(self, via: str, *, n: int = TOKENS, lease: float | None = None) -> AsyncIterator[Reader]:
        """Start an answer of ``n`` tokens written by ``via`` (a queue's worker, or a thread of this test)
        and follow it: ``POST /chat`` for a queue; for a thread, ``POST /streams`` and the resume route."""
        leased: dict[str, float] = {} if lease is None else {"lease": lease}
        if via == "thread":
            opened = await within(self.http.post(f"{self.web.url}/streams", params=leased))
            stream_id = opened.json()["stream_id"]
            args = (self.env["E2E_REDIS_URL"], self.prefix, stream_id, n, INTERVAL)
            threading.Thread(target=sync_answer, args=args, name=f"writer {stream_id}", daemon=True).start()
            async with open_sse(self.http, self.resume_url(stream_id)) as reader:
                yield reader
            return
        params: dict[str, str | float] = {"queue": via, "n": n, "interval": INTERVAL, **leased}
        headers = {"Accept": "text/event-stream"}
        async with self.http.stream(
            "POST", f"{self.web.url}/chat", params=params, headers=headers
        ) as response:
            assert response.status_code == 200, await response.aread()
            try:
                yield Reader(response)
            finally:
                # Closing a response whose server was killed must not hide the test's own outcome.
                with contextlib.suppress(httpx.TransportError):
                    await response.aclose()


@pytest.fixture
async def deployment(
    module_web: Server, module_workers: dict[str, WorkerProcess], env: dict[str, str]
) -> AsyncIterator[Deployment]:
    """Everything running (a process a test killed is started again), and a client."""
    for worker in module_workers.values():
        worker.ensure_running()
    if module_web.process is None or module_web.process.poll() is not None:
        _restart(module_web)
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        deployed = Deployment(module_web, module_workers, env, http)
        try:
            yield deployed
        finally:
            await deployed.redis.aclose()


def tokens_of(events: list[SSEEvent]) -> list[str]:
    return [e.data for e in events if not e.is_terminal]


# -- a client drops mid-answer and resumes --


@pytest.mark.parametrize("via", [*QUEUES, "thread"])
async def test_client_drops_mid_answer_and_resumes_exactly(deployment, via):
    async with deployment.answer(via) as reader:
        before = await within(reader.take(CUT_AT))
        stream_id = reader.stream_id
    # The client hung up mid-answer; it comes back with the last id it saw, on the plugin's resume route.
    url = deployment.resume_url(stream_id)
    after = await within(follow_to_end(deployment.http, url, last_event_id=before[-1].id), 20)

    check_stream(before + after.events, stream_id, numbers(TOKENS))
    report = await deployment.report(stream_id)
    assert report["outcome"] == "done"
    assert report["generated"] == report["written"] == TOKENS
    if via in deployment.workers:
        assert report["pid"] == deployment.workers[via].ready_pid  # that worker wrote it, not the web


# -- the web process is killed and restarted mid-answer --


async def test_web_process_killed_and_restarted_mid_answer_loses_nothing(deployment):
    web = deployment.web
    n = 3 * TOKENS  # long enough to go on while the web process restarts
    async with deployment.answer("saq", n=n) as reader:
        before = await within(reader.take(CUT_AT))
        stream_id = reader.stream_id
        old_pid = web.pid
        web.kill()
        killed_at = time.monotonic()
        await within(reader.rest())  # what was in flight, then the connection is cut
        assert reader.ended is not None
        assert reader.ended.startswith(("reset", "closed")), reader.ended
    received_before_kill = list(reader.events)
    await within(asyncio.to_thread(_restart, web), 40)
    restarted_in = time.monotonic() - killed_at
    assert web.pid != old_pid

    resumed_at = time.time()
    url = deployment.resume_url(stream_id)
    after = await within(follow_to_end(deployment.http, url, last_event_id=received_before_kill[-1].id), 30)
    events = received_before_kill + after.events
    check_stream(events, stream_id, numbers(n))
    report = await deployment.report(stream_id)
    assert report["outcome"] == "done"
    assert report["generated"] == report["written"] == n  # the worker never noticed
    assert report["pid"] == deployment.workers["saq"].ready_pid
    record(
        "web_process_killed_and_restarted",
        tokens=n,
        token_interval_s=INTERVAL,
        events_read_before_kill=len(before),
        events_received_before_kill=len(received_before_kill),
        events_after_restart=len(after.events),
        tokens_after_restart=len(tokens_of(after.events)),
        total_events=len(events),
        total_tokens=len(tokens_of(events)),
        positions_exactly_1_to_n=[e.position for e in events] == list(range(1, len(events) + 1)),
        tokens_exactly_0_to_n_minus_1=tokens_of(events) == numbers(n),
        terminal=events[-1].status,
        kill_to_web_ready_s=round(restarted_in, 2),
        job_tokens_generated=report["generated"],
        job_events_written=report["written"],
        resumed_while_the_job_ran=report["ended_at"] > resumed_at,
    )


def _restart(server: Server) -> None:
    server.stop()  # closes the dead process's log
    server.start()
    server.wait_ready()


# -- the worker is killed mid-answer --


@pytest.mark.parametrize("via", QUEUES)
async def test_worker_killed_mid_answer_ends_stream_interrupted_within_its_lease(deployment, via):
    async with deployment.answer(via, lease=LEASE) as reader:
        await within(reader.take(CUT_AT))
        stream_id = reader.stream_id
        url = deployment.resume_url(stream_id)
        async with open_sse(deployment.http, url, last_event_id=reader.events[-1].id) as other:
            await within(other.take(1))
            deployment.workers[via].kill()
            killed_at = time.monotonic()
            await within(asyncio.gather(reader.rest(), other.rest()), 3 * LEASE + 10)

    for events, first in ((reader.events, 1), (other.events, CUT_AT + 1)):
        assert events[-1].is_terminal, "a follower got no terminal event"
        tokens = len(events) - 1
        check_stream(events, stream_id, numbers(tokens, start=first - 1), "interrupted", first=first)
    assert reader.events[-1].position == other.events[-1].position
    kill_to_interrupted = reader.events[-1].at - killed_at
    record(
        f"worker_killed_{via}",
        lease_s=LEASE,
        promise_s=1.5 * LEASE,
        events_before_kill=CUT_AT,
        tokens_stored=len(reader.events) - 1,
        kill_to_interrupted_s=round(kill_to_interrupted, 3),
        kill_to_interrupted_second_follower_s=round(other.events[-1].at - killed_at, 3),
    )
    # The documented promise: a dead producer's stream ends interrupted within 1.5 leases. The slack is for
    # a loaded machine: this bound catches a follower that does not notice, not a slow one.
    assert kill_to_interrupted < 1.5 * LEASE + 2.0


# -- the web side cancels; the job stops --


@pytest.mark.parametrize("via", [*QUEUES, "thread"])
async def test_cancel_from_the_web_stops_the_job(deployment, via):
    async with deployment.answer(via) as reader:
        await within(reader.take(CUT_AT))
        stream_id = reader.stream_id
        sent_at = time.time()
        cancelled = await within(deployment.http.delete(deployment.resume_url(stream_id)))
        assert cancelled.status_code == 202, cancelled.text
        assert cancelled.json() == {"stream_id": stream_id, "status": "cancelled"}
        await within(reader.rest())
    report = await deployment.report(stream_id)

    end = reader.events[-1]
    stored = end.position - 1
    check_stream(reader.events, stream_id, numbers(stored), "cancelled")
    assert report["outcome"] == "cancelled"
    assert report["cancelled"] is True
    # The job stopped calling the model: far from the end of its answer, and within a token or two of what
    # the stream had taken when it was cancelled.
    generated_after_cancel = report["generated"] - stored
    assert report["generated"] < TOKENS
    assert 0 <= generated_after_cancel <= 3, report
    # Nothing came after the cancel: read again from the start, the stream ends where it was cancelled.
    again = await within(follow_to_end(deployment.http, deployment.resume_url(stream_id)))
    assert again.events == reader.events
    record(
        f"cancel_stops_job_{via}",
        tokens_before_cancel=stored,
        job_tokens_generated=report["generated"],
        job_events_written=report["written"],
        tokens_generated_after_cancel=generated_after_cancel,
        cancel_request_to_job_stopped_s=round(report["ended_at"] - sent_at, 3),
    )


# -- a follower checks an opened stream's own lease, not the plugin's --


async def test_an_unclaimed_opened_stream_ends_interrupted_within_its_own_lease():
    lease = 0.5
    plugin = ResumablePlugin(lease=10)  # the plugin's default; the stream's own lease is shorter
    async with serve(Litestar([], plugins=[plugin])) as client:
        stream_id = await plugin.open_stream(lease=lease)  # and no writer ever claims it
        response = await within(client.get(f"/resumable/streams/{stream_id}"), 1.5 * lease + 2.0)
    events = parse_sse(response.text)
    assert [e.status for e in events] == ["interrupted"]
