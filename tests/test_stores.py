"""What is particular to each store we ship, beyond the contract they all pass (test_store_contract.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from _support.asgi import within

from litestar_resumable import (
    MemoryStreamStore,
    RedisStreamStore,
    StoreUnavailableError,
    StreamEvent,
    StreamStore,
)
from litestar_resumable._ids import new_stream_id

LEASE = 30.0
TTL = 60.0


def events(first: int, *texts: str) -> list[StreamEvent]:
    return [StreamEvent(first + i, text) for i, text in enumerate(texts)]


async def test_the_memory_store_bounds_its_memory_in_bytes() -> None:
    store = MemoryStreamStore(max_bytes=10_000)
    a, b = new_stream_id(), new_stream_id()
    await store.create(a, route="r", lease=LEASE, ttl=TTL)
    await store.append(a, [StreamEvent(1, "x" * 4000)], lease=LEASE)
    await store.finish(a, "done")
    await store.create(b, route="r", lease=LEASE, ttl=TTL)
    await store.append(b, [StreamEvent(1, "é" * 1000)], lease=LEASE)  # 2000 bytes in UTF-8
    # A large write only fits if the ended stream goes; the running one must stay.
    await store.append(b, [StreamEvent(2, "y" * 4000)], lease=LEASE)
    assert await store.info(a) is None
    assert await store.info(b) is not None
    assert store.used_bytes <= store.max_bytes
    with pytest.raises(StoreUnavailableError, match="full"):
        await store.append(b, [StreamEvent(3, "z" * 4000)], lease=LEASE)
    assert len(await store.read_after(b, 0, limit=10)) == 2
    # A stream can always end, even in a full store.
    assert (await store.finish(b, "done")) is not None


@pytest.mark.parametrize("store_kind", ["fakeredis", "redis"], indirect=True)
async def test_a_redis_watch_that_starts_during_writes_serves_the_right_events(
    store: StreamStore, peer_store: StreamStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: the Redis window took local writes before it knew the stream's last position, then
    # set that position under them, so it served events under the wrong positions.
    assert isinstance(store, RedisStreamStore)
    subscribed = asyncio.Event()
    watches = store._watches
    start_watch = watches._start

    async def start_watch_later(watched: Any) -> None:
        await subscribed.wait()
        await start_watch(watched)

    monkeypatch.setattr(watches, "_start", start_watch_later)
    sid = new_stream_id()
    await store.create(sid, route="r", lease=LEASE, ttl=TTL)
    watch_context = store.watch(sid)  # kept: a dropped context manager would close the watch
    watching = asyncio.create_task(watch_context.__aenter__())
    await asyncio.sleep(0)  # the watch is registered; its subscription waits for the test
    await store.append(sid, events(1, "a", "b", "c", "d"), lease=LEASE)
    await peer_store.append(sid, events(5, "e", "f", "g", "h"), lease=LEASE)
    subscribed.set()
    watch = await within(watching)
    await store.append(sid, events(9, "i"), lease=LEASE)
    assert await within(watch.wait(8, 5.0))
    stored = await store.read_after(sid, 0, limit=100)
    assert [(e.position, e.data) for e in stored] == list(zip(range(1, 10), "abcdefghi", strict=True))
    assert [(e.position, e.data) for e in await store.read_after(sid, 6, limit=100)] == [
        (7, "g"),
        (8, "h"),
        (9, "i"),
    ]
    await watch_context.__aexit__(None, None, None)
