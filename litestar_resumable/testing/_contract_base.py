"""What the store contract's test classes share: the fixtures a store's suite overrides, and making a stream.

``StoreContract`` (``_contract``) and the classes it inherits tests from (``_contract_workers``,
``_contract_durable``) all build on :class:`ContractBase`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import ClassVar, TypeVar

import pytest_asyncio

from litestar_resumable._events import StreamEvent
from litestar_resumable._ids import new_stream_id
from litestar_resumable._store.base import StreamStore

T = TypeVar("T")

LEASE = 30.0
TTL = 60.0


def events_from(first: int, *texts: str) -> list[StreamEvent]:
    return [StreamEvent(first + i, text) for i, text in enumerate(texts)]


async def within(awaitable: Awaitable[T], seconds: float = 10.0) -> T:
    async with asyncio.timeout(seconds):
        return await awaitable


class ContractBase:
    """The fixtures every test of the contract takes, and :meth:`make`, which creates a stream to test."""

    route: ClassVar[str] = "tests.route"

    @pytest_asyncio.fixture
    async def store(self) -> AsyncIterator[StreamStore]:
        raise NotImplementedError("override the store fixture: yield the StreamStore under test")
        yield  # pragma: no cover

    @pytest_asyncio.fixture
    async def peer_store(self, store: StreamStore) -> AsyncIterator[StreamStore]:
        yield store

    async def make(
        self,
        store: StreamStore,
        *,
        key: str | None = None,
        lease: float = LEASE,
        ttl: float = TTL,
        owner: str | None = None,
        claimed: bool = True,
    ) -> str:
        stream_id = new_stream_id(key)
        await store.create(
            stream_id, route=self.route, key=key, lease=lease, ttl=ttl, owner=owner, claimed=claimed
        )
        return stream_id
