"""The store contract (``litestar_resumable.testing.StoreContract``), run over every store we ship."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _support.redis_cluster import RedisCluster
from _support.stores import close_store, delete_cluster_prefix, make_store

from litestar_resumable import RedisStreamStore, StreamStore
from litestar_resumable.testing import StoreContract


class TestMemoryStore(StoreContract):
    @pytest.fixture
    async def store(self) -> AsyncIterator[StreamStore]:
        made = make_store("memory", "")
        yield made
        await close_store(made)


class TestFakeRedisStore(StoreContract):
    @pytest.fixture
    async def store(self, key_prefix: str, fake_server: object) -> AsyncIterator[StreamStore]:
        made = make_store("fakeredis", key_prefix, fake_server)
        yield made
        await close_store(made)

    @pytest.fixture
    async def peer_store(self, key_prefix: str, fake_server: object) -> AsyncIterator[StreamStore]:
        made = make_store("fakeredis", key_prefix, fake_server)
        yield made
        await close_store(made)


class TestRedisStore(StoreContract):
    @pytest.fixture
    async def store(self, redis_prefix: str) -> AsyncIterator[StreamStore]:
        made = make_store("redis", redis_prefix)
        yield made
        await close_store(made)

    @pytest.fixture
    async def peer_store(self, redis_prefix: str) -> AsyncIterator[StreamStore]:
        made = make_store("redis", redis_prefix)
        yield made
        await close_store(made)


class TestRedisClusterStore(StoreContract):
    """A Redis Cluster of 3 masters and 3 replicas (tests/_support/redis_cluster.py)."""

    @pytest.fixture
    async def store(self, redis_cluster: RedisCluster, key_prefix: str) -> AsyncIterator[StreamStore]:
        made = RedisStreamStore.from_url(redis_cluster.url, cluster=True, key_prefix=key_prefix)
        yield made
        await made.close()
        delete_cluster_prefix(redis_cluster, key_prefix)

    @pytest.fixture
    async def peer_store(self, redis_cluster: RedisCluster, key_prefix: str) -> AsyncIterator[StreamStore]:
        # Seeded with another node, as another app process would be.
        made = RedisStreamStore.from_url(redis_cluster.urls[-1], cluster=True, key_prefix=key_prefix)
        yield made
        await made.close()
