"""Fault injection: real uvicorn processes (``fault_app.py``), real Redis, and things going wrong.

Clients dropped at random and resumed on another worker, a producer killed with SIGKILL, Redis paused,
Redis killed (and restarted empty, later or at once), a client that stops reading its socket, a server
shut down with streams open, and store writes whose replies are lost or that keep failing. Tests that
pause, kill, restart or sit behind a proxy in front of Redis run their own throwaway ``redis-server`` on
a free port; the others use the shared Redis under a key prefix of their own.

What the tests measure (time to ``interrupted``, time to an end after Redis is lost, ...) is printed and
collected in ``/tmp/fault-figures.json``. ``FAULT_SEED=<n>`` replays the random choices of the drop test.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Self

import h11
import httpx
import pytest
from conftest import REDIS_URL, REQUIRE_REDIS, serve, within
from fault_app import big_chunk, tokens
from litestar import Litestar, get
from proxy import DroppingProxy
from redis import Redis
from redis.exceptions import RedisError
from servers import Server, free_port, running
from sse import Event, parse_block, parse_sse_text

from litestar_resumable import MemoryStreamStore, ResumablePlugin, resumable

pytestmark = pytest.mark.e2e

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
FIGURES_FILE = Path("/tmp/fault-figures.json")  # noqa: S108 - the brief asks for a file under /tmp
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
# Every server of these tests shuts down quickly when the test ends, whatever streams it still holds.
FAST_STOP = {"E2E_SHUTDOWN_GRACE": "0.5", "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": "1"}


def record(name: str, **figures: Any) -> None:
    """Print a test's measurements and merge them into ``FIGURES_FILE``."""
    print(f"[fault figures] {name}: {json.dumps(figures, sort_keys=True)}")  # noqa: T201
    try:
        collected = json.loads(FIGURES_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        collected = {}
    collected[name] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    FIGURES_FILE.write_text(json.dumps(collected, indent=2, sort_keys=True) + "\n", encoding="utf-8")


async def sse_events(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of a response as they arrive; an unfinished last block is dropped."""
    block: list[str] = []
    async for line in response.aiter_lines():
        if line:
            block.append(line)
        elif block:
            event = parse_block(block)
            block = []
            if event is not None:
                yield event


class Reader:
    """One SSE response, read event by event, remembering how it ended."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: list[Event] = []
        self.ended: str | None = None  # "terminal", "closed" (no terminal event) or "reset: <error>"
        self.ended_at: float | None = None
        self._iterator = sse_events(response)

    @property
    def stream_id(self) -> str:
        return self.response.headers["x-resumable-stream-id"]

    def _end(self, how: str) -> None:
        self.ended = how
        self.ended_at = time.monotonic()

    async def next(self) -> Event | None:
        if self.ended is not None:
            return None
        try:
            event = await anext(self._iterator)
        except StopAsyncIteration:
            self._end("closed")
            return None
        except httpx.TransportError as exc:
            self._end(f"reset: {type(exc).__name__}")
            return None
        self.events.append(event)
        if event.is_terminal:
            self._end("terminal")
        return event

    async def take(self, n: int) -> list[Event]:
        taken = []
        for _ in range(n):
            event = await self.next()
            assert event is not None, f"the response ended ({self.ended}) where an event was expected"
            taken.append(event)
        return taken

    async def rest(self) -> list[Event]:
        """Every event up to the terminal one or the end of the response."""
        start = len(self.events)
        while await self.next() is not None:
            pass
        return self.events[start:]


@contextlib.asynccontextmanager
async def open_sse(
    client: httpx.AsyncClient, url: str, *, last_event_id: str | None = None
) -> AsyncIterator[Reader]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, (url, response.status_code, await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream")
        try:
            yield Reader(response)
        finally:
            # Closing a response whose server was killed must not hide the test's own outcome.
            with contextlib.suppress(httpx.TransportError):
                await response.aclose()


async def follow_to_end(client: httpx.AsyncClient, url: str, *, last_event_id: str | None = None) -> Reader:
    async with open_sse(client, url, last_event_id=last_event_id) as reader:
        await reader.rest()
        return reader


def check_stream(
    events: list[Event], stream_id: str, data: list[str], status: str = "done", *, first: int = 1
) -> None:
    """``events`` are a stream from position ``first``: ``data``, then exactly one terminal event."""
    assert {e.stream_id for e in events} == {stream_id}
    assert [e.position for e in events] == list(range(first, first + len(data) + 1))
    assert [e.data for e in events[:-1]] == data
    assert [e.is_terminal for e in events] == [False] * len(data) + [True]
    assert events[-1].status == status


def numbers(n: int, start: int = 0) -> list[str]:
    return [str(i) for i in range(start, start + n)]


# -- servers and Redis servers --


@pytest.fixture
def launch() -> Iterator[Callable[..., list[Server]]]:
    """Start ``fault_app`` servers (one per environment) that run until the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda *envs: stack.enter_context(
            running(*({**FAST_STOP, **env} for env in envs), app="fault_app:app")
        )


@pytest.fixture
def shared(redis_prefix: str, launch: Callable[..., list[Server]]) -> Callable[..., list[Server]]:
    """Start servers on the shared Redis under this test's prefix (they stop before its keys go)."""
    return lambda *settings: launch(
        *({"E2E_REDIS_URL": REDIS_URL, "E2E_KEY_PREFIX": redis_prefix, **s} for s in settings)
    )


class OwnRedis:
    """A throwaway ``redis-server`` of this test's own, free to pause, kill and restart."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir  # its own --dir: a restart must never load someone's dump.rdb
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: Any) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=2, **options)

    def start(self) -> None:
        """Start an empty server on this port (again, after a kill) and wait until it answers."""
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(RedisError, OSError):
                client = self.client(socket_timeout=1)
                try:
                    if client.ping():
                        assert client.dbsize() == 0, "a restarted Redis must start empty"
                        return
                finally:
                    client.close()
            assert self.process.poll() is None, f"redis-server exited with {self.process.returncode}"
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def pause(self, seconds: float) -> None:
        """``CLIENT PAUSE <ms> ALL``: every client's every command waits until the pause is over."""
        client = self.client(socket_timeout=5)
        try:
            client.execute_command("CLIENT", "PAUSE", round(seconds * 1000), "ALL")
        finally:
            client.close()

    def wait_unpaused(self, timeout: float) -> None:
        """Return once Redis answers again (a PING waits out a pause)."""
        client = self.client(socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if not Path(REDIS_SERVER).exists():
        problem = "these tests start their own redis-server, and none is installed"
        if REQUIRE_REDIS:
            pytest.fail(f"RESUMABLE_REQUIRE_REDIS=1 but {problem}")
        pytest.skip(problem)
    server = OwnRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def own(own_redis: OwnRedis, launch: Callable[..., list[Server]]) -> Callable[..., list[Server]]:
    """Start servers on this test's own Redis (they stop before it does)."""
    prefix = f"fault-{uuid.uuid4().hex[:12]}"
    return lambda *settings: launch(
        *({"E2E_REDIS_URL": own_redis.url, "E2E_KEY_PREFIX": prefix, **s} for s in settings)
    )


# -- many streams, random drops, random workers --

STREAMS = 30
TOKENS = 80
TOKEN_INTERVAL = 0.025
DROPS_PER_CLIENT = 3


class DroppedClient:
    """A client that reads one generation, hangs up at random points and resumes on a random worker."""

    def __init__(self, index: int, rng: random.Random, proxies: list[DroppingProxy]) -> None:
        self.index = index
        self.rng = rng
        self.proxies = proxies
        self.seed = rng.randrange(2**31)
        self.stream_id: str | None = None
        self.events: list[Event] = []
        self.connections = 0
        self.hang_ups = 0
        self.resets = 0
        self.restarts = 0

    def _request(self, proxy: DroppingProxy) -> tuple[str, dict[str, str]]:
        route = f"{proxy.url}/text?seed={self.seed}&n={TOKENS}&interval={TOKEN_INTERVAL}"
        if self.stream_id is None:
            return route, {}
        last = self.events[-1].id if self.events else f"{self.stream_id}.0"
        assert last is not None
        resume = f"{proxy.url}/resumable/streams/{self.stream_id}"
        way = self.rng.randrange(3)
        if way == 0:  # what a browser's EventSource does: the same URL with Last-Event-ID
            return route, {"Last-Event-ID": last}
        if way == 1:
            return resume, {"Last-Event-ID": last}
        return f"{resume}?last_event_id={last}", {}

    async def run(self, http: httpx.AsyncClient) -> None:
        await asyncio.sleep(self.rng.uniform(0, 0.5))
        hang_up_after = sorted(self.rng.sample(range(1, TOKENS + 1), DROPS_PER_CLIENT))
        while True:
            assert self.connections + self.resets < 60, f"client {self.index} keeps failing"
            url, headers = self._request(self.rng.choice(self.proxies))
            try:
                async with http.stream("GET", url, headers=headers) as response:
                    assert response.status_code == 200, (url, response.status_code, await response.aread())
                    self.connections += 1
                    stream_id = response.headers["x-resumable-stream-id"]
                    if self.stream_id is None:
                        self.stream_id = stream_id
                    assert stream_id == self.stream_id
                    async for event in sse_events(response):
                        self.events.append(event)
                        if event.is_terminal:
                            return
                        if hang_up_after and event.position >= hang_up_after[0]:
                            hang_up_after.pop(0)
                            self.hang_ups += 1
                            break
            except httpx.TransportError:
                self.resets += 1
                if self.stream_id is None:
                    self.restarts += 1  # lost before the headers: nothing seen, so a new generation is fine
            await asyncio.sleep(self.rng.uniform(0, 0.15))


@pytest.mark.redis
@pytest.mark.timeout(90)
async def test_many_streams_survive_random_drops_and_worker_switches(shared):
    seed = int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(2**32))
    print(f"random drops: seed {seed} (FAULT_SEED={seed} replays its choices)")  # noqa: T201
    master = random.Random(seed)  # noqa: S311 - reproducible test choices, not a secret
    a, b = shared({}, {})
    limits = httpx.Limits(max_connections=4 * STREAMS, max_keepalive_connections=0)
    started = time.monotonic()
    async with (
        DroppingProxy(a.port) as proxy_a,
        DroppingProxy(b.port) as proxy_b,
        httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as http,
    ):
        proxies = [proxy_a, proxy_b]
        rngs = [random.Random(master.getrandbits(64)) for _ in range(STREAMS + 1)]  # noqa: S311
        clients = [DroppedClient(i, rngs[i], proxies) for i in range(STREAMS)]
        network_drops = 0

        async def cut_the_network(rng: random.Random) -> None:
            nonlocal network_drops
            while True:
                await asyncio.sleep(rng.uniform(0.15, 0.5))
                rng.choice(proxies).drop()  # resets every connection through that worker's proxy
                network_drops += 1

        chaos = asyncio.create_task(cut_the_network(rngs[STREAMS]))
        try:
            await within(asyncio.gather(*(c.run(http) for c in clients)), 60)
        finally:
            chaos.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chaos
    elapsed = time.monotonic() - started

    for c in clients:
        assert c.stream_id is not None
        check_stream(c.events, c.stream_id, tokens(c.seed, TOKENS))
        assert "".join(e.data for e in c.events[:-1]) == "".join(tokens(c.seed, TOKENS))
        assert c.hang_ups == DROPS_PER_CLIENT
    connections = sum(c.connections for c in clients)
    assert network_drops >= 3
    assert connections >= STREAMS * 3
    assert proxy_a.connections >= STREAMS
    assert proxy_b.connections >= STREAMS
    record(
        "drops",
        seed=seed,
        streams=STREAMS,
        tokens_per_stream=TOKENS,
        elapsed_s=round(elapsed, 2),
        responses=connections,
        client_hang_ups=sum(c.hang_ups for c in clients),
        network_drops=network_drops,
        connections_reset=sum(c.resets for c in clients),
        restarted_before_headers=sum(c.restarts for c in clients),
        via_worker_a=proxy_a.connections,
        via_worker_b=proxy_b.connections,
    )


# -- a producer killed with SIGKILL --

KILL_SLACK = 1.0


@pytest.mark.redis
@pytest.mark.parametrize("lease", [1.0, 2.0])
async def test_a_killed_producer_ends_interrupted_within_the_lease(shared, lease):
    a, b = shared({"E2E_LEASE": str(lease)}, {"E2E_LEASE": str(lease)})
    bound = 2 * lease + KILL_SLACK
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as client,
        open_sse(client, f"{a.url}/count?n=100000&interval=0.02") as on_a,
    ):
        stream_id = on_a.stream_id
        await within(on_a.take(3))
        async with open_sse(client, f"{b.url}/resumable/streams/{stream_id}") as early:
            before = await within(early.take(25))
            a.kill()
            killed = time.monotonic()
            # One follower that was there before the kill, one that comes right after it.
            async with open_sse(
                client, f"{b.url}/resumable/streams/{stream_id}", last_event_id=before[-1].id
            ) as late:
                await within(asyncio.gather(early.rest(), late.rest()), bound)
        replay = await within(follow_to_end(client, f"{b.url}/resumable/streams/{stream_id}"))

    stored = early.events[-1].position - 1
    assert stored >= 25
    check_stream(early.events, stream_id, numbers(stored), "interrupted")
    check_stream(late.events, stream_id, numbers(stored - 25, 25), "interrupted", first=26)
    assert replay.events == early.events  # what the followers got is all that was stored, in order
    assert early.ended_at is not None
    assert late.ended_at is not None
    to_early, to_late = early.ended_at - killed, late.ended_at - killed
    assert max(to_early, to_late) <= bound
    record(
        f"sigkill_lease_{lease:g}",
        lease_s=lease,
        bound_s=bound,
        kill_to_interrupted_follower_before_kill_s=round(to_early, 3),
        kill_to_interrupted_follower_after_kill_s=round(to_late, 3),
        as_multiple_of_lease=round(max(to_early, to_late) / lease, 2),
        events_stored_before_kill=stored,
    )


# -- Redis paused --

PAUSE = 3.0


@pytest.mark.redis
async def test_a_redis_pause_loses_nothing(own_redis, own):
    a, b = own({"E2E_LEASE": "10"}, {"E2E_LEASE": "10"})
    seed, n, interval = 7, 100, 0.03
    expected = tokens(seed, n)
    async with httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=5.0)) as client:
        async with open_sse(client, f"{a.url}/text?seed={seed}&n={n}&interval={interval}") as starter:
            stream_id = starter.stream_id
            resume = f"/resumable/streams/{stream_id}"
            await within(starter.take(1))
            before = asyncio.create_task(follow_to_end(client, b.url + resume))
            await within(starter.take(29))
            await asyncio.to_thread(own_redis.pause, PAUSE)
            paused = time.monotonic()
            await asyncio.sleep(0.5)
            during = [
                asyncio.create_task(follow_to_end(client, b.url + resume)),
                asyncio.create_task(follow_to_end(client, a.url + resume, last_event_id=f"{stream_id}.10")),
            ]
            await asyncio.to_thread(own_redis.wait_unpaused, PAUSE + 5)
            unpaused = time.monotonic()
            after = asyncio.create_task(follow_to_end(client, b.url + resume))
            await within(starter.rest(), 15)
        followers = await within(asyncio.gather(before, *during, after), 15)

    check_stream(starter.events, stream_id, expected)
    for reader in (followers[0], followers[1], followers[3]):
        check_stream(reader.events, stream_id, expected)
    check_stream(followers[2].events, stream_id, expected[10:], first=11)
    assert "".join(e.data for e in followers[0].events[:-1]) == "".join(expected)
    times = [e.at for e in followers[0].events]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    record(
        "redis_pause",
        pause_s=PAUSE,
        measured_pause_s=round(unpaused - paused, 3),
        longest_gap_for_follower_before_pause_s=round(max(gaps), 3),
        unpause_to_last_event_s=round(starter.events[-1].at - unpaused, 3),
        generator_s=round((n - 1) * interval, 2),
    )


# -- Redis gone for good, then back empty --

GONE_BOUND = 20.0


@pytest.mark.redis
async def test_redis_gone_ends_every_follower_and_a_restart_empty_gives_404(own_redis, own):
    a, b, c = own({"E2E_LEASE": "2"}, {"E2E_LEASE": "2"}, {"E2E_LEASE": "2"})
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0)) as client:
        async with contextlib.AsyncExitStack() as stack:
            held = await stack.enter_async_context(open_sse(client, f"{a.url}/hold?n=3"))
            counting = await stack.enter_async_context(
                open_sse(client, f"{b.url}/count?n=100000&interval=0.02")
            )
            on_c = await stack.enter_async_context(open_sse(client, f"{c.url}/hold?n=2"))
            held_id, counting_id = held.stream_id, counting.stream_id
            readers = {
                "hold, producer's worker": held,
                "hold, other worker": await stack.enter_async_context(
                    open_sse(client, f"{b.url}/resumable/streams/{held_id}")
                ),
                "count, producer's worker": counting,
                "count, other worker": await stack.enter_async_context(
                    open_sse(client, f"{a.url}/resumable/streams/{counting_id}")
                ),
            }
            for reader in readers.values():
                await within(reader.take(3))
            await within(on_c.take(2))

            own_redis.kill()
            gone = time.monotonic()
            ending = asyncio.gather(*(reader.rest() for reader in readers.values()))

            # While Redis is gone: routes without the store answer at once, store routes in bounded time.
            assert c.process is not None
            c.process.send_signal(signal.SIGTERM)
            c_exit = asyncio.create_task(asyncio.to_thread(c.process.wait, 60))
            pid_latencies = []
            for _ in range(10):
                for server in (a, b):
                    asked = time.monotonic()
                    response = await within(client.get(f"{server.url}/pid"), 2)
                    assert response.json() == server.pid
                    pid_latencies.append(time.monotonic() - asked)
                await asyncio.sleep(0.1)
            asked = time.monotonic()
            start_during = await within(client.get(f"{a.url}/count?n=3"), GONE_BOUND)
            start_during_s = time.monotonic() - asked
            asked = time.monotonic()
            resume_during = await within(
                client.get(f"{b.url}/resumable/streams/{held_id}", headers={"Last-Event-ID": f"{held_id}.1"}),
                GONE_BOUND,
            )
            resume_during_s = time.monotonic() - asked
            await within(ending, GONE_BOUND)
            await within(c_exit, GONE_BOUND)
            c_exit_s = time.monotonic() - gone

        ends = {}
        for name, reader in readers.items():
            assert reader.ended is not None
            assert reader.ended_at is not None
            ends[name] = {"after_s": round(reader.ended_at - gone, 3), "how": reader.ended}
            stream_id = held_id if name.startswith("hold") else counting_id
            got = reader.events
            if name.endswith("other worker"):
                assert got[0].position == 1
            # Whatever arrived is the stream's own data, in order, then a terminal event of the follower's
            # own: the store is gone, so it has no id (it is not stored) and names the store.
            stored = [e for e in got if e.id is not None]
            assert [e.position for e in stored] == list(range(1, len(stored) + 1))
            assert {e.stream_id for e in stored} == {stream_id}
            data = [e.data for e in stored if not e.is_terminal]
            assert data == numbers(len(data))
            assert reader.ended == "terminal", reader.ended
            assert got[-1].id is None
            assert json.loads(got[-1].data) == {
                "status": "interrupted",
                "message": "the stream store is unavailable",
            }
        # A store out of reach is a 503 (retryable, and litestar_resumable.client retries it), not a 500.
        assert start_during.status_code == 503, start_during.text
        assert resume_during.status_code == 503, resume_during.text

        # Redis back, empty: every resume is a clear 404 (or a terminal event), never old or wrong data.
        own_redis.start()
        back = time.monotonic()
        resumes = []
        for server in (a, b):
            for stream_id, route, reader in (
                (held_id, "/hold", held),
                (counting_id, "/count", counting),
            ):
                last = next(e.id for e in reversed(reader.events) if e.id is not None)  # the last stored one
                for url, headers in (
                    (f"{server.url}/resumable/streams/{stream_id}", {}),
                    (f"{server.url}/resumable/streams/{stream_id}", {"Last-Event-ID": last}),
                    (f"{server.url}{route}", {"Last-Event-ID": last}),
                ):
                    asked = time.monotonic()
                    response = await within(client.get(url, headers=headers), 15)
                    resumes.append((response.status_code, round(time.monotonic() - asked, 3)))
                    if response.status_code == 200:
                        events = parse_sse_text(response.text)
                        assert [e.is_terminal for e in events] == [True], response.text
                    else:
                        assert response.status_code == 404, (url, response.status_code, response.text)

        # And the app works again: a new stream, produced on A and followed live from B.
        async with open_sse(client, f"{a.url}/count?n=30&interval=0.02") as fresh:
            new_id = fresh.stream_id
            on_b = asyncio.create_task(follow_to_end(client, f"{b.url}/resumable/streams/{new_id}"))
            await within(fresh.rest(), 15)
        followed = await within(on_b, 15)
        check_stream(fresh.events, new_id, numbers(30))
        check_stream(followed.events, new_id, numbers(30))
        recovered_s = time.monotonic() - back

    record(
        "redis_gone",
        lease_s=2.0,
        follower_ends=ends,
        slowest_follower_end_s=max(v["after_s"] for v in ends.values()),
        pid_max_latency_s=round(max(pid_latencies), 3),
        start_while_gone={"status": start_during.status_code, "after_s": round(start_during_s, 3)},
        resume_while_gone={"status": resume_during.status_code, "after_s": round(resume_during_s, 3)},
        sigterm_to_exit_while_gone_s=round(c_exit_s, 3),
        resumes_after_empty_restart=resumes,
        restart_to_new_stream_followed_s=round(recovered_s, 3),
    )


@pytest.mark.redis
async def test_redis_restarted_empty_under_live_followers(own_redis, own):
    lease = 2.0
    a, b = own({"E2E_LEASE": f"{lease:g}"}, {"E2E_LEASE": f"{lease:g}"})
    async with (
        httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0)) as client,
        contextlib.AsyncExitStack() as stack,
    ):
        counting = await stack.enter_async_context(open_sse(client, f"{a.url}/count?n=100000&interval=0.02"))
        held = await stack.enter_async_context(open_sse(client, f"{b.url}/hold?n=3"))
        streams = {"count": counting, "hold": held}
        readers = {
            "count, producer's worker": counting,
            "count, other worker": await stack.enter_async_context(
                open_sse(client, f"{b.url}/resumable/streams/{counting.stream_id}")
            ),
            "hold, producer's worker": held,
            "hold, other worker": await stack.enter_async_context(
                open_sse(client, f"{a.url}/resumable/streams/{held.stream_id}")
            ),
        }
        for reader in readers.values():
            await within(reader.take(3))

        own_redis.kill()
        own_redis.start()  # at once, empty, on the same port
        restarted = time.monotonic()
        await within(asyncio.gather(*(reader.rest() for reader in readers.values())), GONE_BOUND)

        ends = {}
        for name, reader in readers.items():
            assert reader.ended_at is not None
            ends[name] = {"after_s": round(reader.ended_at - restarted, 3), "how": reader.ended}
            got = reader.events
            stored = [e for e in got if e.id is not None]  # a follower's own terminal event has no id
            assert [e.position for e in stored] == list(range(1, len(stored) + 1))
            assert {e.stream_id for e in stored} == {streams[name.partition(",")[0]].stream_id}
            data = [e.data for e in stored if not e.is_terminal]
            assert data == numbers(len(data))
            if reader.ended == "terminal":
                assert got[-1].status in {"interrupted", "error"}
        statuses = []
        for server in (a, b):
            for reader in streams.values():
                response = await within(
                    client.get(
                        f"{server.url}/resumable/streams/{reader.stream_id}",
                        headers={"Last-Event-ID": reader.events[-1].id or ""},
                    ),
                    15,
                )
                statuses.append(response.status_code)
    assert statuses == [404] * 4
    # The producers learn their streams are gone and write nothing: no half stream comes back to life.
    await asyncio.sleep(lease)
    client_ = own_redis.client(socket_timeout=5)
    try:
        leftovers = client_.keys("*")
    finally:
        client_.close()
    assert leftovers == []
    record(
        "redis_restarted_empty_under_followers",
        lease_s=lease,
        follower_ends=ends,
        slowest_follower_end_s=max(v["after_s"] for v in ends.values()),
        resumes=statuses,
    )


# -- a reader that stops reading --

BIG_N = 1500
BIG_SIZE = 8000
BIG_INTERVAL = 0.002


def _queued_bytes(sock: socket.socket) -> int:
    """Bytes in the socket's receive queue (FIONREAD)."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])


class StalledClient:
    """A raw HTTP client with a tiny receive buffer, reading only when told to."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)  # noqa: FBT003
        self.conn = h11.Connection(h11.CLIENT)
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.received = 0
        self.complete = False
        self.closed = False

    async def request(self, target: str) -> None:
        """Send the request and read just far enough for the response's headers."""
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        request = h11.Request(
            method="GET",
            target=target,
            headers=[("Host", f"127.0.0.1:{self.port}"), ("Accept", "text/event-stream")],
        )
        await loop.sock_sendall(self.sock, self.conn.send(request) + self.conn.send(h11.EndOfMessage()))
        while not self.headers:
            await self._read_some(1024)

    async def _read_some(self, size: int) -> None:
        data = await asyncio.get_running_loop().sock_recv(self.sock, size)
        self.received += len(data)
        self.conn.receive_data(data)
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:  # closed in the middle of the body: dropped
                self.closed = True
                return
            if event is h11.NEED_DATA:
                break
            if isinstance(event, h11.Response):
                assert event.status_code == 200
                self.headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
                return
            elif event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                self.closed = True
                return
        if not data:
            self.closed = True

    async def read_to_end(self) -> None:
        while not (self.complete or self.closed):
            await self._read_some(65536)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.redis
@pytest.mark.timeout(60)
async def test_a_reader_that_stops_reading_slows_nobody(shared):
    (server,) = shared({})
    generator_s = (BIG_N - 1) * BIG_INTERVAL
    total = BIG_N * BIG_SIZE
    stalled = StalledClient(server.port)
    try:
        requested = time.monotonic()
        # The stalled client is the one that starts the generation: the producer must not care.
        await within(stalled.request(f"/big?n={BIG_N}&size={BIG_SIZE}&interval={BIG_INTERVAL}"))
        stream_id = stalled.headers["x-resumable-stream-id"]
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            reader = await within(
                follow_to_end(client, f"{server.url}/resumable/streams/{stream_id}"), generator_s + 15
            )
        followed_s = time.monotonic() - requested
        check_stream(reader.events, stream_id, [big_chunk(i, BIG_SIZE) for i in range(BIG_N)])
        # The stalled client's bytes so far, read or waiting in its socket: far from all of it, so the
        # rest was held up on the server's side of the connection while the follower got everything.
        reached_client = stalled.received + _queued_bytes(stalled.sock)
        assert reached_client < total / 2
        assert followed_s <= generator_s + 3.0

        resumed = time.monotonic()
        await within(stalled.read_to_end(), 20)
        catch_up_s = time.monotonic() - resumed
        events = parse_sse_text(stalled.body.decode())
        assert events
        if stalled.complete:
            check_stream(events, stream_id, [big_chunk(i, BIG_SIZE) for i in range(BIG_N)])
        else:  # dropped: what it got is a clean prefix of the stream
            assert [e.position for e in events] == list(range(1, len(events) + 1))
            assert [e.data for e in events] == [big_chunk(i, BIG_SIZE) for i in range(len(events))]
    finally:
        stalled.close()
    record(
        "stalled_reader",
        events=BIG_N,
        bytes=total,
        generator_s=round(generator_s, 2),
        follower_done_after_s=round(followed_s, 3),
        stalled_bytes_when_follower_done=reached_client,
        stalled_outcome="caught up" if stalled.complete else "dropped",
        stalled_catch_up_s=round(catch_up_s, 3),
    )


# -- shutdown with open streams --

GRACEFUL = 2.0
SHUTDOWN_GRACE = 1.0


@pytest.mark.redis
async def test_shutdown_with_open_streams_ends_them_interrupted(shared):
    settings: Mapping[str, str] = {
        "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": f"{GRACEFUL:g}",  # uvicorn --timeout-graceful-shutdown 2
        "E2E_SHUTDOWN_GRACE": f"{SHUTDOWN_GRACE:g}",
    }
    a, b = shared(settings, {})
    assert a.process is not None
    async with httpx.AsyncClient(timeout=TIMEOUT) as client, contextlib.AsyncExitStack() as stack:
        on_a = [await stack.enter_async_context(open_sse(client, f"{a.url}/hold?n=2")) for _ in range(3)]
        counting = open_sse(client, f"{a.url}/count?n=100000&interval=0.05")
        on_a.append(await stack.enter_async_context(counting))
        for reader in on_a:
            await within(reader.take(2))
        on_b = [
            await stack.enter_async_context(open_sse(client, f"{b.url}/resumable/streams/{r.stream_id}"))
            for r in on_a
        ]
        for reader in on_b:
            await within(reader.take(2))

        a.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        exit_bound = GRACEFUL + SHUTDOWN_GRACE + 5.0
        await within(
            asyncio.gather(*(r.rest() for r in on_a + on_b), asyncio.to_thread(a.process.wait, exit_bound)),
            exit_bound + 1,
        )
        exited_s = time.monotonic() - signalled
        log = a.output()

        for reader in on_b:
            data = [e.data for e in reader.events[:-1]]
            check_stream(reader.events, reader.stream_id, numbers(len(data)), "interrupted")
        # The connections to the stopping server just end; resuming on B gives the rest and the end.
        resumed = [
            await within(
                follow_to_end(
                    client, f"{b.url}/resumable/streams/{r.stream_id}", last_event_id=r.events[-1].id
                )
            )
            if not r.events[-1].is_terminal
            else None
            for r in on_a
        ]
    assert "timeout graceful shutdown exceeded" in log, log
    assert a.process.returncode is not None
    assert exited_s <= exit_bound
    for reader_a, reader_b, rest in zip(on_a, on_b, resumed, strict=True):
        whole = reader_a.events + (rest.events if rest is not None else [])
        assert whole == reader_b.events
    to_terminal = [r.ended_at - signalled for r in on_b if r.ended_at is not None]
    record(
        "shutdown",
        timeout_graceful_shutdown_s=GRACEFUL,
        shutdown_grace_s=SHUTDOWN_GRACE,
        sigterm_to_exit_s=round(exited_s, 3),
        sigterm_to_interrupted_on_other_worker_s=[round(t, 3) for t in to_terminal],
        producing_worker_connections_ended=[r.ended for r in on_a],
        exit_code=a.process.returncode,
    )


# -- a store write whose reply is lost --

SCRIPTS_DIR = Path(__file__).resolve().parent.parent / "litestar_resumable" / "_store"


def script_sha(name: str) -> bytes:
    """The SHA1 that redis-py's EVALSHA sends for one of the store's Lua scripts."""
    return hashlib.sha1((SCRIPTS_DIR / name).read_bytes()).hexdigest().encode()  # noqa: S324 - Redis's


class ReplyLosingProxy:
    """A TCP proxy in front of Redis that lets the ``nth`` run of one script through and then cuts the
    connection before its reply gets back: what a network blip or a failover does to a command in flight.
    """

    def __init__(self, target_port: int, sha: bytes, nth: int) -> None:
        self.target_port = target_port
        self.sha = sha
        self.nth = nth
        self.seen = 0
        self.cut = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for transport in list(self._transports):
            transport.abort()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._transports.add(client_writer.transport)
        lose_next_reply = False
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._transports.add(upstream_writer.transport)

            async def requests() -> None:
                nonlocal lose_next_reply
                while data := await client_reader.read(65536):
                    if b"EVALSHA" in data and self.sha in data:
                        self.seen += 1
                        lose_next_reply = lose_next_reply or self.seen == self.nth
                    upstream_writer.write(data)
                    await upstream_writer.drain()

            async def replies() -> None:
                while data := await upstream_reader.read(65536):
                    if lose_next_reply:
                        self.cut += 1
                        return  # Redis has run the script; the client never hears of it
                    client_writer.write(data)
                    await client_writer.drain()

            pipes = {asyncio.create_task(requests()), asyncio.create_task(replies())}
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            upstream_writer.transport.abort()
            client_writer.transport.abort()
            await asyncio.wait(pipes)
            for pipe in pipes:
                if not pipe.cancelled():
                    pipe.exception()  # read, so an OSError of a reset pipe is not reported as lost
            self._transports.discard(upstream_writer.transport)
        except OSError:
            pass
        finally:
            client_writer.transport.abort()
            self._transports.discard(client_writer.transport)
            self._handlers.discard(task)


@pytest.mark.redis
async def test_a_lost_reply_to_an_append_loses_nothing(own_redis, launch):
    # Redis runs the 10th append but its reply is lost; the producer's retry must not end the stream
    # (before b6931a5 the retry was refused as 'append at position N, expected N+k' and the stream ended
    # right after the lost batch, without the rest of the generation).
    async with ReplyLosingProxy(own_redis.port, script_sha("_redis_append.lua"), nth=10) as proxy:
        (server,) = launch({"E2E_REDIS_URL": proxy.url, "E2E_KEY_PREFIX": "lost-reply"})
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            reader = await within(follow_to_end(client, f"{server.url}/count?n=40&interval=0.02"), 30)
    assert proxy.cut == 1  # the fault did happen
    check_stream(reader.events, reader.stream_id, numbers(40))


@pytest.mark.redis
async def test_a_lost_reply_to_a_create_is_a_retryable_answer(own_redis, launch):
    async with ReplyLosingProxy(own_redis.port, script_sha("_redis_create.lua"), nth=1) as proxy:
        (server,) = launch({"E2E_REDIS_URL": proxy.url, "E2E_KEY_PREFIX": "lost-reply"})
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            first = await within(client.get(f"{server.url}/count?n=5"), 30)
            again = (
                await within(client.get(f"{server.url}/count?n=5"), 30) if first.status_code == 503 else None
            )
    assert proxy.cut == 1  # the fault did happen
    # Either the start survived the lost reply, or it answered 503, which clients retry; never a 500.
    response = first if again is None else again
    assert response.status_code == 200, (first.status_code, response.text)
    check_stream(parse_sse_text(response.text), response.headers["x-resumable-stream-id"], numbers(5))
    record("lost_create_reply", first_answer=first.status_code)


class FailingWrites(MemoryStreamStore):
    """A store that takes the first ``ok`` events of a stream and then fails every write, as a store that
    has gone out of reach does."""

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.ok = ok
        self.failures = 0

    async def append(self, stream_id: str, events: Any, *, lease: float) -> bool:
        if events and events[-1].position > self.ok:
            self.failures += 1
            raise ConnectionError("the store is out of reach")
        return await super().append(stream_id, events, lease=lease)


async def test_events_the_store_never_took_do_not_end_as_done():
    store = FailingWrites(ok=5)

    @get("/count")
    @resumable
    async def count(n: int = 10) -> AsyncIterator[str]:
        for i in range(n):
            yield str(i)
            await asyncio.sleep(0.01)

    app = Litestar([count], plugins=[ResumablePlugin(store=store)])
    async with serve(app) as client:
        response = await within(client.get("/count?n=10", timeout=20), 20)
    events = parse_sse_text(response.text)
    assert store.failures > 0
    check_stream(events, response.headers["x-resumable-stream-id"], numbers(5), status="error")
