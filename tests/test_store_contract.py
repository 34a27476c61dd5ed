"""The store contract, run over every store: memory, fakeredis and a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import within

from litestar_resumable import MemoryStreamStore, RedisStreamStore, StreamEvent, StreamStore

LEASE = 30.0
TTL = 60.0


def events(first: int, *texts: str) -> list[StreamEvent]:
    return [StreamEvent(first + i, text) for i, text in enumerate(texts)]


async def make(
    store: StreamStore,
    stream_id: str = "s" * 22,
    *,
    key: str | None = None,
    lease: float = LEASE,
    owner: str | None = None,
) -> str:
    await store.create(stream_id, route="tests.route", key=key, lease=lease, ttl=TTL, owner=owner)
    return stream_id


async def test_new_stream_is_running_and_empty(store: StreamStore) -> None:
    sid = await make(store, key="chat-1")
    info = await store.info(sid)
    assert info is not None
    assert (info.status, info.last_position, info.route, info.key) == ("running", 0, "tests.route", "chat-1")
    assert info.owner is None
    assert await store.read_after(sid, 0, limit=10) == []


@pytest.mark.parametrize("owner", ["user-7", "", "=odd:owner\n"])
async def test_the_owner_is_kept_exactly(store: StreamStore, owner: str) -> None:
    sid = await make(store, owner=owner)
    info = await store.info(sid)
    assert info is not None
    assert info.owner == owner
    ended = await store.finish(sid, "done", "{}")
    assert ended is not None
    assert ended.owner == owner


async def test_unknown_stream_has_no_info_and_no_events(store: StreamStore) -> None:
    assert await store.info("x" * 22) is None
    assert await store.read_after("x" * 22, 0, limit=10) == []
    assert await store.finish("x" * 22, "cancelled", "{}") is None


async def test_create_twice_is_refused(store: StreamStore) -> None:
    sid = await make(store)
    with pytest.raises(ValueError, match="exists"):
        await make(store, sid)


async def test_append_and_read_in_order_with_limits(store: StreamStore) -> None:
    sid = await make(store)
    assert await store.append(sid, events(1, "a", "b", "c"), lease=LEASE)
    assert await store.append(sid, events(4, "d"), lease=LEASE)
    assert [e.data for e in await store.read_after(sid, 0, limit=100)] == ["a", "b", "c", "d"]
    assert [e.position for e in await store.read_after(sid, 1, limit=2)] == [2, 3]
    assert await store.read_after(sid, 4, limit=10) == []
    info = await store.info(sid)
    assert info is not None
    assert info.last_position == 4


async def test_data_and_event_names_round_trip(store: StreamStore) -> None:
    sid = await make(store)
    texts = ["", "line1\nline2", "crlf\r\nand cr\r", "ünïcødé ✓ 🚀", '{"json": [1, 2]}', " leading space"]
    stored = [StreamEvent(i + 1, t, "custom" if i % 2 else None) for i, t in enumerate(texts)]
    assert await store.append(sid, stored, lease=LEASE)
    assert await store.read_after(sid, 0, limit=100) == stored


async def test_append_out_of_position_is_an_error_and_stores_nothing(store: StreamStore) -> None:
    sid = await make(store)
    await store.append(sid, events(1, "a"), lease=LEASE)
    with pytest.raises(Exception, match="position"):
        await store.append(sid, events(5, "e"), lease=LEASE)
    assert [e.data for e in await store.read_after(sid, 0, limit=10)] == ["a"]


async def test_finish_writes_one_terminal_event_after_the_last(store: StreamStore) -> None:
    sid = await make(store)
    await store.append(sid, events(1, "a", "b"), lease=LEASE)
    info = await store.finish(sid, "done", '{"status":"done"}')
    assert info is not None
    assert (info.status, info.last_position) == ("done", 3)
    again = await store.finish(sid, "cancelled", '{"status":"cancelled"}')
    assert again is not None
    assert (again.status, again.last_position) == ("done", 3)
    stored = await store.read_after(sid, 0, limit=10)
    assert [(e.position, e.event, e.data) for e in stored[2:]] == [(3, "end", '{"status":"done"}')]
    assert stored[-1].is_terminal


async def test_append_after_the_end_is_refused(store: StreamStore) -> None:
    sid = await make(store)
    await store.finish(sid, "cancelled", '{"status":"cancelled"}')
    assert not await store.append(sid, events(2, "late"), lease=LEASE)
    assert [e.data for e in await store.read_after(sid, 0, limit=10)] == ['{"status":"cancelled"}']


async def test_finish_if_lease_expired_spares_a_live_producer(store: StreamStore) -> None:
    sid = await make(store)
    info = await store.finish(sid, "interrupted", "{}", only_if_lease_expired=True)
    assert info is not None
    assert info.status == "running"


async def test_finish_if_lease_expired_ends_a_dead_producer(store: StreamStore) -> None:
    sid = await make(store, lease=0.01)
    await asyncio.sleep(0.05)  # let the 10 ms lease lapse: this waits out a deadline, it does not synchronise
    info = await store.finish(sid, "interrupted", '{"status":"interrupted"}', only_if_lease_expired=True)
    assert info is not None
    assert (info.status, info.last_position) == ("interrupted", 1)


async def test_append_renews_the_lease(store: StreamStore) -> None:
    sid = await make(store, lease=0.05)
    await store.append(sid, [], lease=LEASE)
    await asyncio.sleep(0.1)
    info = await store.finish(sid, "interrupted", "{}", only_if_lease_expired=True)
    assert info is not None
    assert info.status == "running"


async def test_ended_stream_expires_after_its_ttl(store: StreamStore) -> None:
    await store.create("t" * 22, route="r", key=None, lease=LEASE, ttl=0.05)
    await store.finish("t" * 22, "done", "{}")
    assert await store.info("t" * 22) is not None
    await asyncio.sleep(0.2)
    assert await store.info("t" * 22) is None
    assert await store.read_after("t" * 22, 0, limit=10) == []


async def test_key_compare_and_set(store: StreamStore) -> None:
    assert await store.get_key("chat") is None
    assert await store.compare_and_set_key("chat", None, "a" * 22, ttl=TTL)
    assert not await store.compare_and_set_key("chat", None, "b" * 22, ttl=TTL)
    assert not await store.compare_and_set_key("chat", "c" * 22, "b" * 22, ttl=TTL)
    assert await store.get_key("chat") == "a" * 22
    assert await store.compare_and_set_key("chat", "a" * 22, "b" * 22, ttl=TTL)
    assert await store.compare_and_set_key("chat", "b" * 22, None, ttl=TTL)
    assert await store.get_key("chat") is None


async def test_watch_wakes_on_an_append_from_another_worker(
    store: StreamStore, peer_store: StreamStore
) -> None:
    sid = await make(store)
    async with store.watch(sid) as watch:
        waiting = asyncio.create_task(watch.wait(0, 30.0))
        await asyncio.sleep(0)
        assert not waiting.done()
        await peer_store.append(sid, events(1, "from the peer"), lease=LEASE)
        assert await within(waiting) is True
        assert [e.data for e in await store.read_after(sid, 0, limit=10)] == ["from the peer"]


async def test_watch_wakes_on_the_terminal_event(store: StreamStore, peer_store: StreamStore) -> None:
    sid = await make(store)
    await store.append(sid, events(1, "a"), lease=LEASE)
    async with store.watch(sid) as watch:
        waiting = asyncio.create_task(watch.wait(1, 30.0))
        await asyncio.sleep(0)
        await peer_store.finish(sid, "cancelled", '{"status":"cancelled"}')
        assert await within(waiting) is True
        assert [e.event for e in await store.read_after(sid, 1, limit=10)] == ["end"]


async def test_watch_wait_times_out_when_nothing_happens(store: StreamStore) -> None:
    sid = await make(store)
    async with store.watch(sid) as watch:
        assert await within(watch.wait(0, 0.05)) is False


async def test_watchers_read_a_long_stream_without_gap_or_duplicate(
    store: StreamStore, peer_store: StreamStore
) -> None:
    sid = await make(store)
    total = 3000

    async def produce() -> None:
        for first in range(1, total + 1, 100):
            await peer_store.append(
                sid, events(first, *(str(p) for p in range(first, first + 100))), lease=LEASE
            )
            await asyncio.sleep(0)
        await peer_store.finish(sid, "done", "{}")

    async def read() -> list[int]:
        seen: list[int] = []
        async with store.watch(sid) as watch:
            while True:
                got = await store.read_after(sid, seen[-1] if seen else 0, limit=250)
                seen.extend(e.position for e in got)
                if got and got[-1].is_terminal:
                    return seen
                if not got:
                    await watch.wait(seen[-1] if seen else 0, 5.0)

    readers = [asyncio.create_task(read()) for _ in range(5)]
    await within(produce(), 30)
    for seen in await within(asyncio.gather(*readers), 30):
        assert seen == list(range(1, total + 2))


async def test_memory_store_bounds_its_memory() -> None:
    store = MemoryStreamStore(max_bytes=10_000)
    await store.create("a" * 22, route="r", key=None, lease=LEASE, ttl=TTL)
    await store.append("a" * 22, [StreamEvent(1, "x" * 4000)], lease=LEASE)
    await store.finish("a" * 22, "done", "{}")
    await store.create("b" * 22, route="r", key=None, lease=LEASE, ttl=TTL)
    await store.append("b" * 22, [StreamEvent(1, "y" * 4000)], lease=LEASE)
    # A third large write only fits if the ended stream goes; the running one must stay.
    await store.append("b" * 22, [StreamEvent(2, "y" * 4000)], lease=LEASE)
    assert await store.info("a" * 22) is None
    assert await store.info("b" * 22) is not None
    assert store.used_bytes <= store.max_bytes
    from litestar_resumable import StoreUnavailableError  # noqa: PLC0415

    with pytest.raises(StoreUnavailableError, match="full"):
        await store.append("b" * 22, [StreamEvent(3, "z" * 4000)], lease=LEASE)
    assert len(await store.read_after("b" * 22, 0, limit=10)) == 2


async def test_lease_renewals_keep_the_events_alive(store: StreamStore) -> None:
    # Regression: empty appends renewed the meta record but let the events expire under a quiet producer.
    await store.create("q" * 22, route="r", key=None, lease=0.3, ttl=0.1)
    await store.append("q" * 22, events(1, "kept"), lease=0.3)
    for _ in range(6):
        await asyncio.sleep(0.1)  # waits out part of the 0.4 s expiry each time; renewals must push it on
        assert await store.append("q" * 22, [], lease=0.3)
    assert [e.data for e in await store.read_after("q" * 22, 0, limit=10)] == ["kept"]


async def test_concurrent_lease_checks_share_one_answer(store: StreamStore) -> None:
    # Regression: readers asking while another reader's check ran got a placeholder None ("gone").
    sid = await make(store)
    async with store.watch(sid) as first, store.watch(sid) as second:
        answers = await within(
            asyncio.gather(*(w.interrupt_if_abandoned(60.0) for w in (first, second, first, second)))
        )
    assert all(info is not None and info.is_running for info in answers)


async def test_a_watch_that_starts_during_writes_serves_the_right_events(
    store: StreamStore, peer_store: StreamStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: the Redis window took local writes before it knew the stream's last position, then
    # set that position under them, so it served events under the wrong positions.
    if not isinstance(store, RedisStreamStore):
        pytest.skip("only the Redis store has a window that starts asynchronously")
    subscribed = asyncio.Event()
    start_watch = store._start_watch

    async def start_watch_later(watched: Any) -> None:
        await subscribed.wait()
        await start_watch(watched)

    monkeypatch.setattr(store, "_start_watch", start_watch_later)
    sid = await make(store)
    watch_context = store.watch(sid)  # kept: a dropped context manager would close the watch
    watching = asyncio.create_task(watch_context.__aenter__())
    await asyncio.sleep(0)  # the watch is registered; its subscription waits for the test
    await store.append(sid, events(1, "a", "b", "c", "d"), lease=LEASE)
    await peer_store.append(sid, events(5, "e", "f", "g", "h"), lease=LEASE)
    subscribed.set()
    watch = await within(watching)
    await store.append(sid, events(9, "i"), lease=LEASE)
    assert await within(watch.wait(8, 5.0))
    assert [(e.position, e.data) for e in await store.read_after(sid, 0, limit=100)] == list(
        zip(range(1, 10), "abcdefghi", strict=True)
    )
    assert [(e.position, e.data) for e in await store.read_after(sid, 6, limit=100)] == [
        (7, "g"),
        (8, "h"),
        (9, "i"),
    ]
    await watch_context.__aexit__(None, None, None)


async def test_a_retried_batch_is_stored_once(store: StreamStore) -> None:
    # A producer retries a write whose reply was lost although the store ran it (a dropped connection):
    # the retry must renew the lease, not fail on the position or store the events twice.
    sid = await make(store)
    batch = events(1, "a", "b")
    assert await store.append(sid, batch, lease=LEASE)
    assert await store.append(sid, batch, lease=LEASE)
    assert await store.append(sid, events(3, "c"), lease=LEASE)
    assert [(e.position, e.data) for e in await store.read_after(sid, 0, limit=10)] == [
        (1, "a"),
        (2, "b"),
        (3, "c"),
    ]


async def test_a_watch_of_a_gone_stream_does_not_wake_at_once(store: StreamStore) -> None:
    # Regression: the memory store's watch answered "something new" at once for a stream that had
    # expired, so its follower spun until its next lease check.
    await store.create("g" * 22, route="r", key=None, lease=LEASE, ttl=0.05)
    await store.finish("g" * 22, "done", "{}")
    async with store.watch("g" * 22) as watch:
        await asyncio.sleep(0.2)  # the stream expires
        assert await store.info("g" * 22) is None
        assert await within(watch.wait(1, 0.05)) is False
