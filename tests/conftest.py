from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import uvicorn
from redis import Redis
from redis.exceptions import RedisError

from litestar_resumable import MemoryStreamStore, RedisStreamStore, StreamStore

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_REDIS = os.environ.get("RESUMABLE_REQUIRE_REDIS") == "1"


def _redis_answers() -> str | None:
    try:
        Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except (RedisError, OSError) as exc:
        return f"no Redis answers at {REDIS_URL} ({exc}); set REDIS_URL or start redis-server"
    return None


_REDIS_PROBLEM = _redis_answers()


def need_redis() -> None:
    """Skip the calling test when no real Redis answers, or fail when the run requires one."""
    if _REDIS_PROBLEM is None:
        return
    if REQUIRE_REDIS:
        pytest.fail(f"RESUMABLE_REQUIRE_REDIS=1 but {_REDIS_PROBLEM}")
    pytest.skip(_REDIS_PROBLEM)


@pytest.fixture
def redis_url() -> str:
    need_redis()
    return REDIS_URL


@pytest.fixture
def key_prefix() -> str:
    """A prefix of this test's own, so tests never see each other's keys (and never flush anything)."""
    return f"test-{uuid.uuid4().hex[:12]}"


def _delete_prefix(key_prefix: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def redis_prefix(redis_url: str, key_prefix: str) -> Iterator[str]:
    """This test's key prefix on the real Redis; its keys are deleted afterwards."""
    yield key_prefix
    _delete_prefix(key_prefix)


STORE_KINDS = ["memory", "fakeredis", "redis"]
_fake_servers: list[object] = []


@pytest.fixture(autouse=True)
def _one_fake_redis_server_per_test() -> Iterator[None]:
    import fakeredis  # noqa: PLC0415

    _fake_servers.append(fakeredis.FakeServer())
    yield
    _fake_servers.pop()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[str]:
    if request.param == "redis":
        need_redis()
        yield "redis"
        _delete_prefix(key_prefix)
    else:
        yield request.param


def redis_client(kind: str) -> aioredis.Redis:
    """A new client on this kind's Redis: the real one, or this test's fakeredis server."""
    if kind == "fakeredis":
        import fakeredis  # noqa: PLC0415

        return fakeredis.FakeAsyncRedis(server=_fake_servers[-1])
    return aioredis.Redis.from_url(REDIS_URL)


def make_store(kind: str, key_prefix: str) -> StreamStore:
    if kind == "memory":
        return MemoryStreamStore()
    return RedisStreamStore(redis_client(kind), key_prefix=key_prefix)


async def close_store(store: StreamStore) -> None:
    await store.close()
    if isinstance(store, RedisStreamStore):
        await store.redis.aclose()


@pytest.fixture
async def store(store_kind: str, key_prefix: str) -> AsyncIterator[StreamStore]:
    made = make_store(store_kind, key_prefix)
    try:
        yield made
    finally:
        await close_store(made)


@pytest.fixture
async def peer_store(store: StreamStore, store_kind: str, key_prefix: str) -> AsyncIterator[StreamStore]:
    """A second store on the same backend: what another worker process sees. Memory has no peers."""
    if isinstance(store, MemoryStreamStore):
        yield store
        return
    assert isinstance(store, RedisStreamStore)
    other = make_store(store_kind, key_prefix)
    try:
        yield other
    finally:
        await close_store(other)


async def within(awaitable, seconds: float = 10.0):
    """Await with a bound, so a broken test fails instead of hanging."""
    return await asyncio.wait_for(awaitable, seconds)


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app`` on a real uvicorn server in this event loop; yield an httpx client for it.

    Litestar's own test clients run the app in another thread and read whole responses, which cannot
    show a stream while it is live; this is a real server and a real client in the test's loop, so the
    test can also look at the store the app uses.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", ws="none", http="h11")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await within(_started(server, task))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await within(task, 30)
        sock.close()


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
