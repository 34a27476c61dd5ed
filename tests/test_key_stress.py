"""One running generation per key, under contention: many rounds of 20 concurrent starts of one chat,
released together, across two server processes sharing one real Redis, with the invariant watched in
Redis while they run."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Self

import httpx
import pytest
from _support.asgi import within
from _support.figures import record
from _support.reading import Reader
from _support.servers import Server
from _support.stores import REDIS_URL, delete_cluster_prefix
from redis.asyncio import Redis

from litestar_resumable._ids import key_tag

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

STARTS = 20
ROUNDS = 12


class Invariant:
    """Samples Redis while a round runs: how many streams of the chat's slot are running at once."""

    def __init__(self, redis: Redis, prefix: str, chat: str) -> None:
        self.redis = redis
        self.pattern = f"{prefix}:{{{key_tag(f'-:{chat}')}}}:*:meta"
        self.samples = 0
        self.most_running = 0
        self._task: asyncio.Task[None] | None = None
        self._stop = False

    async def _watch(self) -> None:
        while not self._stop:
            running = 0
            async for meta in self.redis.scan_iter(match=self.pattern, count=1000):
                running += await self.redis.hget(meta, "status") == b"running"  # type: ignore[misc]
            self.samples += 1
            self.most_running = max(self.most_running, running)
            await asyncio.sleep(0.002)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # A flag, not a cancel: redis-py can stall a command cancelled in flight.
        assert self._task is not None
        self._stop = True
        await within(self._task)


async def start_together(
    client: httpx.AsyncClient, urls: list[str], stack: contextlib.AsyncExitStack
) -> list[httpx.Response]:
    """POST to every url at once (a barrier releases them), keeping the responses open."""
    barrier = asyncio.Barrier(len(urls))

    async def start(url: str) -> httpx.Response:
        await barrier.wait()
        return await stack.enter_async_context(client.stream("POST", url))

    return list(await within(asyncio.gather(*(start(url) for url in urls)), 30))


@dataclass
class Backend:
    """Two app processes on one Redis (or a Redis Cluster, through two different nodes), and where the
    keys of a chat live: the URL of the node that holds its slot."""

    name: str
    servers: list[Server]
    prefix: str
    node_of: Callable[[str], str]


@pytest.fixture(params=["redis", "cluster"])
def backend(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[Backend]:
    if request.param == "redis":
        servers = request.getfixturevalue("shared")({}, {})
        yield Backend("redis", servers, request.getfixturevalue("redis_prefix"), lambda _chat: REDIS_URL)
        return
    cluster = request.getfixturevalue("redis_cluster")
    env = {"E2E_REDIS_CLUSTER": "1", "E2E_KEY_PREFIX": key_prefix}
    servers = request.getfixturevalue("launch")(
        {**env, "E2E_REDIS_URL": cluster.urls[0]}, {**env, "E2E_REDIS_URL": cluster.urls[4]}
    )

    def node_of(chat: str) -> str:
        return f"redis://127.0.0.1:{cluster.master_of_key('{' + key_tag(chat) + '}')}/0"

    yield Backend("cluster", servers, key_prefix, node_of)
    delete_cluster_prefix(cluster, key_prefix)


@pytest.mark.timeout(180)
async def test_concurrent_starts_of_a_chat_leave_one_generation_running(backend):
    servers, redis_prefix, node_of = backend.servers, backend.prefix, backend.node_of
    statuses: Counter[int] = Counter()
    invariant_samples = 0
    limits = httpx.Limits(max_connections=3 * STARTS)
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0), limits=limits) as client:
        for round_ in range(ROUNDS):
            chat = f"chat-{uuid.uuid4().hex[:8]}"
            redis = Redis.from_url(node_of(f"-:{chat}"))
            try:
                strict = round_ % 2 == 1
                path = f"/chats/{chat}/strict" if strict else f"/chats/{chat}"
                urls = [f"{servers[i % 2].url}{path}" for i in range(STARTS)]
                invariant = Invariant(redis, redis_prefix, chat)
                async with contextlib.AsyncExitStack() as stack, invariant:
                    responses = await start_together(client, urls, stack)
                    statuses.update(r.status_code for r in responses)
                    ok = [r for r in responses if r.status_code == 200]
                    entry = f"{redis_prefix}:{{{key_tag(f'-:{chat}')}}}:key:-:{chat}"
                    holder = (await redis.get(entry) or b"").decode()
                    if strict:
                        # Exactly one 200; every other start is told which stream runs.
                        assert len(ok) == 1, [r.status_code for r in responses]
                        running = ok[0].headers["x-resumable-stream-id"]
                        assert holder == running
                        for refused in (r for r in responses if r.status_code != 200):
                            assert refused.status_code == 409
                            body = await refused.aread()
                            assert httpx.Response(409, content=body).json()["extra"] == {"stream_id": running}
                    else:
                        # Every start got a stream; all but one end cancelled, and that one runs.
                        assert len(ok) == STARTS, [r.status_code for r in responses]
                        running = holder
                        endings = await within(asyncio.gather(*(ending(r, running) for r in ok)), 30)
                        assert sorted(endings) == ["cancelled"] * (STARTS - 1) + ["running"]
                    cancel = client.delete(f"{servers[round_ % 2].url}/resumable/streams/{running}")
                    cancelled = await within(cancel)
                    assert cancelled.status_code == 202
                assert invariant.most_running <= 1
                invariant_samples += invariant.samples
            finally:
                await redis.aclose()
    assert set(statuses) <= {200, 409}  # contention alone never answers 429, 503 or 500
    record(
        f"one_generation_per_key_{backend.name}",
        rounds=ROUNDS,
        starts_per_round=STARTS,
        servers=2,
        answers=dict(statuses),
        invariant_samples=invariant_samples,
    )


async def ending(response: httpx.Response, running: str) -> str:
    """How a started stream ended ('running' for the chat's running one, whose first event is its start)."""
    reader = Reader(response)
    if reader.stream_id == running:
        first = await reader.next()
        assert first is not None
        assert not first.is_terminal
        return "running"
    events = await reader.rest()
    assert events
    return events[-1].status
