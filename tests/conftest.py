"""Fixtures: stores of every kind (memory, fakeredis, real Redis) under a key prefix per test, app
server processes on the shared Redis or on a Redis of the test's own, and Redis Clusters of the tests' own."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from _support.redis_cluster import RedisCluster, need_cluster_tools
from _support.redis_servers import REDIS_SERVER, OwnRedis
from _support.servers import Server, running
from _support.stores import (
    REDIS_URL,
    REQUIRE_REDIS,
    STORE_KINDS,
    close_store,
    delete_prefix,
    make_store,
    need_redis,
)

from litestar_resumable import MemoryStreamStore, StreamStore


@pytest.fixture
def key_prefix() -> str:
    """A prefix of this test's own, so tests never see each other's keys (and never flush anything)."""
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_prefix(key_prefix: str) -> Iterator[str]:
    """This test's key prefix on the real Redis; its keys are deleted afterwards."""
    need_redis()
    yield key_prefix
    delete_prefix(key_prefix)


@pytest.fixture
def fake_server() -> object:
    import fakeredis  # noqa: PLC0415

    return fakeredis.FakeServer()


@pytest.fixture(params=STORE_KINDS)
def store_kind(request: pytest.FixtureRequest, key_prefix: str) -> Iterator[str]:
    if request.param == "redis":
        need_redis()
        yield "redis"
        delete_prefix(key_prefix)
    else:
        yield request.param


@pytest.fixture
async def store(store_kind: str, key_prefix: str, fake_server: object) -> AsyncIterator[StreamStore]:
    made = make_store(store_kind, key_prefix, fake_server)
    try:
        yield made
    finally:
        await close_store(made)


@pytest.fixture
async def peer_store(
    store: StreamStore, store_kind: str, key_prefix: str, fake_server: object
) -> AsyncIterator[StreamStore]:
    """A second store on the same backend: what another worker process sees. Memory has no peers."""
    if isinstance(store, MemoryStreamStore):
        yield store
        return
    other = make_store(store_kind, key_prefix, fake_server)
    try:
        yield other
    finally:
        await close_store(other)


# Every server process of the tests shuts down quickly when its test ends, whatever streams it still holds.
FAST_STOP = {"E2E_SHUTDOWN_GRACE": "0.5", "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": "1"}


@pytest.fixture
def launch() -> Iterator[Callable[..., list[Server]]]:
    """Start app servers (``_support/app.py``, one per environment) that run until the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda *envs: stack.enter_context(running(*({**FAST_STOP, **env} for env in envs)))


@pytest.fixture
def shared(redis_prefix: str, launch: Callable[..., list[Server]]) -> Callable[..., list[Server]]:
    """Start servers on the shared Redis under this test's prefix (they stop before its keys go)."""
    return lambda *settings: launch(
        *({"E2E_REDIS_URL": REDIS_URL, "E2E_KEY_PREFIX": redis_prefix, **s} for s in settings)
    )


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


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """One Redis Cluster (3 masters, 3 replicas) for the whole session: tests keep to keys of their own
    and never kill its nodes (``failover_cluster`` is for that). ``started_in`` says how long it took."""
    need_cluster_tools()
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def failover_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A fresh Redis Cluster of this test's own, free to kill nodes of; stopped when the test ends."""
    need_cluster_tools()
    cluster = RedisCluster(tmp_path)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
