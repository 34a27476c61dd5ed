"""Limits counted across workers (``ResumablePlugin(shared_limits=True)``): two app processes on one real
Redis admit no more than the limit between them, under concurrent starts released together, and what a
dead worker held is counted no longer once its counts expire."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest
from _support.asgi import within
from _support.figures import record

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

LIMITED = {"E2E_SHARED_LIMITS": "1", "E2E_MAX_GENERATIONS": "3", "E2E_MAX_FOLLOWERS": "2"}


async def start_together(
    client: httpx.AsyncClient, urls: list[str], stack: contextlib.AsyncExitStack
) -> list[int]:
    """GET every url at once (a barrier releases them), keeping the admitted streams open."""
    barrier = asyncio.Barrier(len(urls))

    async def start(url: str) -> int:
        await barrier.wait()
        response = await stack.enter_async_context(client.stream("GET", url))
        return response.status_code

    return list(await within(asyncio.gather(*(start(url) for url in urls)), 30))


async def test_generations_are_limited_across_workers_under_concurrent_starts(shared):
    a, b = shared(LIMITED, LIMITED)
    async with httpx.AsyncClient(timeout=10) as client, contextlib.AsyncExitStack() as stack:
        statuses = await start_together(client, [f"{(a, b)[i % 2].url}/hold" for i in range(12)], stack)
        assert sorted(statuses) == [200] * 3 + [429] * 9
        refused = await client.get(f"{a.url}/hold")
        assert refused.status_code == 429
        assert "max_generations (3)" in refused.json()["detail"]
    # Leaving the block closed the readers, not the generations: they hold their slots until cancelled.
    async with httpx.AsyncClient(timeout=10) as client:
        assert (await client.get(f"{b.url}/hold")).status_code == 429


async def test_followers_of_a_stream_are_limited_across_workers(shared):
    a, b = shared(LIMITED, LIMITED)
    async with httpx.AsyncClient(timeout=10) as client, client.stream("GET", f"{a.url}/hold") as first:
        stream_id = first.headers[
            "x-resumable-stream-id"
        ]  # the starting request is the stream's first reader
        async with client.stream("GET", f"{b.url}/resumable/streams/{stream_id}") as second:
            assert second.status_code == 200
            for server in (a, b):
                third = await client.get(f"{server.url}/resumable/streams/{stream_id}")
                assert third.status_code == 429
        # One reader left: there is room again, on either worker.
        async with client.stream("GET", f"{a.url}/resumable/streams/{stream_id}") as again:
            assert again.status_code == 200


async def test_what_a_dead_worker_held_expires(shared):
    settings = {**LIMITED, "E2E_LIMITS_TTL": "1"}
    a, b = shared(settings, settings)
    async with httpx.AsyncClient(timeout=10) as client:
        async with contextlib.AsyncExitStack() as stack:
            statuses = await start_together(client, [f"{a.url}/hold"] * 3, stack)
            assert statuses == [200] * 3
            assert (await client.get(f"{b.url}/hold")).status_code == 429
            a.kill()
            killed = time.monotonic()
        # The dead worker renews nothing: within about a ttl its slots are free.
        while True:
            async with client.stream("GET", f"{b.url}/hold") as response:
                if response.status_code == 200:
                    break
            assert time.monotonic() - killed < 10, "the dead worker's slots did not expire"
            await asyncio.sleep(0.1)
        freed_s = time.monotonic() - killed
    record("shared_limits_dead_worker", limits_ttl_s=1.0, kill_to_slot_free_s=round(freed_s, 2))
