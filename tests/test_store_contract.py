"""The store contract (``litestar_resumable.testing.StoreContract``), run over every store we ship."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from _support.stores import close_store, make_store

from litestar_resumable import StreamStore
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
