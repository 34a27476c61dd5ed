"""Fault injection: real uvicorn processes (``_support/app.py``), real Redis, and things going wrong.

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
import itertools
import json
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Mapping

import httpx
import pytest
from _support.app import big_chunk, tokens
from _support.asgi import serve, within
from _support.clients import DroppedClient, StalledClient, queued_bytes
from _support.figures import record
from _support.proxy import DroppingProxy
from _support.reading import check_stream, follow_to_end, numbers, open_sse
from _support.redis_servers import ReplyLosingProxy, script_sha
from _support.stores import FailingStore
from litestar import Litestar, get

from litestar_resumable import ResumablePlugin, resumable
from litestar_resumable.testing import parse_sse

pytestmark = pytest.mark.e2e

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


# -- many streams, random drops, random workers --

STREAMS = 30
TOKENS = 80
TOKEN_INTERVAL = 0.025
DROPS_PER_CLIENT = 3


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
        clients = [
            DroppedClient(i, rngs[i], proxies, tokens=TOKENS, interval=TOKEN_INTERVAL, drops=DROPS_PER_CLIENT)
            for i in range(STREAMS)
        ]
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
                        events = parse_sse(response.text)
                        assert [e.is_terminal for e in events] == [True], response.text
                    else:
                        assert response.status_code == 404, (
                            url,
                            response.status_code,
                            response.text,
                            server.output()[-2500:],
                        )

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
        reached_client = stalled.received + queued_bytes(stalled.sock)
        assert reached_client < total / 2

        resumed = time.monotonic()
        await within(stalled.read_to_end(), 20)
        catch_up_s = time.monotonic() - resumed
        events = parse_sse(stalled.body.decode())
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
    check_stream(parse_sse(response.text), response.headers["x-resumable-stream-id"], numbers(5))
    record("lost_create_reply", first_answer=first.status_code)


async def test_events_the_store_never_took_do_not_end_as_done():
    store = FailingStore(ok=5)

    @get("/count")
    @resumable
    async def count(n: int = 10) -> AsyncIterator[str]:
        for i in range(n):
            yield str(i)
            await asyncio.sleep(0.01)

    app = Litestar([count], plugins=[ResumablePlugin(store=store)])
    async with serve(app) as client:
        response = await within(client.get("/count?n=10", timeout=20), 20)
    events = parse_sse(response.text)
    assert store.failures > 0
    check_stream(events, response.headers["x-resumable-stream-id"], numbers(5), status="error")
