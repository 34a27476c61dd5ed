"""The stores tests run on: memory, fakeredis, and the real Redis at ``REDIS_URL``.

``RESUMABLE_REQUIRE_REDIS=1`` (set by ``.ci/run``) turns "no Redis, skip" into a failure, so CI can never
pass by skipping the real thing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis import Redis
from redis.exceptions import RedisError

from litestar_resumable import (
    MemoryStreamStore,
    RedisStreamStore,
    StoreUnavailableError,
    StreamEvent,
    StreamStore,
)

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REQUIRE_REDIS = os.environ.get("RESUMABLE_REQUIRE_REDIS") == "1"
STORE_KINDS = ["memory", "fakeredis", "redis"]


def _redis_problem() -> str | None:
    try:
        Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except (RedisError, OSError) as exc:
        return f"no Redis answers at {REDIS_URL} ({exc}); set REDIS_URL or start redis-server"
    return None


_REDIS_PROBLEM = _redis_problem()


def need_redis() -> None:
    """Skip the calling test when no real Redis answers, or fail when the run requires one."""
    if _REDIS_PROBLEM is None:
        return
    if REQUIRE_REDIS:
        pytest.fail(f"RESUMABLE_REQUIRE_REDIS=1 but {_REDIS_PROBLEM}")
    pytest.skip(_REDIS_PROBLEM)


def delete_prefix(key_prefix: str, url: str = REDIS_URL) -> None:
    """Delete one test's keys (tests never flush a shared Redis)."""
    client = Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{key_prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def delete_cluster_prefix(cluster: Any, key_prefix: str) -> None:
    """Delete one test's keys on every master of a test cluster (``_support.redis_cluster.RedisCluster``)."""
    for port in cluster.masters():
        client = cluster.client(port)
        try:
            keys = list(client.scan_iter(match=f"{key_prefix}:*", count=1000))
            for key in keys:
                client.delete(key)
        finally:
            client.close()


def redis_client(kind: str, fake_server: object | None = None) -> aioredis.Redis:
    """A new client on this kind's Redis: the real one, or a fakeredis server. Its pool is larger than
    redis-py's default of 100 connections, which a test with many concurrent streams can pass."""
    if kind == "fakeredis":
        import fakeredis  # noqa: PLC0415

        return fakeredis.FakeAsyncRedis(server=fake_server, max_connections=1000)
    return aioredis.Redis.from_url(REDIS_URL, max_connections=1000)


def make_store(kind: str, key_prefix: str, fake_server: object | None = None) -> StreamStore:
    if kind == "memory":
        return MemoryStreamStore()
    return RedisStreamStore(redis_client(kind, fake_server), key_prefix=key_prefix)


async def close_store(store: StreamStore) -> None:
    await store.close()
    if isinstance(store, RedisStreamStore):
        await store.redis.aclose()


class FailingStore(MemoryStreamStore):
    """A memory store that takes a stream's first ``ok`` events and then fails every write that has
    events, after a suspension, as a store gone out of reach does."""

    def __init__(self, ok: int) -> None:
        super().__init__()
        self.ok = ok
        self.failures = 0

    async def append(self, stream_id: str, events: Sequence[StreamEvent], *, lease: float) -> bool:
        if events and events[-1].position > self.ok:
            await asyncio.sleep(0)
            self.failures += 1
            raise StoreUnavailableError("the store is out of reach")
        return await super().append(stream_id, events, lease=lease)
