"""The store contract: the behaviour the plugin relies on, as a test suite any store can run.

    from litestar_resumable.testing import StoreContract

    class TestPostgresStore(StoreContract):
        @pytest_asyncio.fixture
        async def store(self):
            store = PostgresStreamStore(...)
            yield store
            await store.close()

Override ``peer_store`` too for a store that several processes share: it should be a second instance on
the same backend (what another worker sees); by default it is the store itself. Timing tests wait out
leases and TTLs of a few tens of milliseconds; they do not assert on wall time.

``StoreContract`` holds the tests of creating, appending and reading, ending and keys, and inherits those of
workers sharing a store (``_contract_workers``) and of durable streams (``_contract_durable``).
"""

from __future__ import annotations

import asyncio

import pytest

from litestar_resumable._errors import KeyConflictError, StreamExistsError
from litestar_resumable._events import StreamEvent
from litestar_resumable._ids import new_stream_id
from litestar_resumable._store.base import StreamStore
from litestar_resumable.testing._contract_base import LEASE, TTL, events_from, within
from litestar_resumable.testing._contract_durable import DurableStoreContract
from litestar_resumable.testing._contract_workers import WorkersStoreContract

__all__ = ("StoreContract",)


@pytest.mark.asyncio
class StoreContract(WorkersStoreContract, DurableStoreContract):
    """Subclass it and override the ``store`` fixture; every test method then runs on your store."""

    # -- creating --

    async def test_new_stream_is_running_and_empty(self, store: StreamStore) -> None:
        sid = await self.make(store, key="chat-1")
        info = await store.info(sid)
        assert info is not None
        assert (info.status, info.last_position, info.route, info.key) == ("running", 0, self.route, "chat-1")
        assert (info.owner, info.format) == (None, "sse")
        assert await store.read_after(sid, 0, limit=10) == []

    @pytest.mark.parametrize("owner", ["user-7", "", "=odd:owner\n"])
    async def test_the_owner_is_kept_exactly(self, store: StreamStore, owner: str) -> None:
        sid = await self.make(store, owner=owner)
        info = await store.info(sid)
        assert info is not None
        assert info.owner == owner
        ended = await store.finish(sid, "done")
        assert ended is not None
        assert ended.owner == owner

    async def test_the_format_is_kept(self, store: StreamStore) -> None:
        sid = new_stream_id()
        await store.create(sid, route="r", lease=LEASE, ttl=TTL, format="ai-sdk")
        info = await store.info(sid)
        assert info is not None
        assert info.format == "ai-sdk"

    async def test_unknown_stream_has_no_info_and_no_events(self, store: StreamStore) -> None:
        sid = new_stream_id()
        assert await store.info(sid) is None
        assert await store.read_after(sid, 0, limit=10) == []
        assert await store.finish(sid, "cancelled") is None
        assert not await store.append(sid, events_from(1, "a"), lease=LEASE)

    async def test_create_twice_is_refused(self, store: StreamStore) -> None:
        sid = await self.make(store)
        with pytest.raises(StreamExistsError):
            await store.create(sid, route="r", lease=LEASE, ttl=TTL)

    # -- appending and reading --

    async def test_append_and_read_in_order_with_limits(self, store: StreamStore) -> None:
        sid = await self.make(store)
        assert await store.append(sid, events_from(1, "a", "b", "c"), lease=LEASE)
        assert await store.append(sid, events_from(4, "d"), lease=LEASE)
        assert [e.data for e in await store.read_after(sid, 0, limit=100)] == ["a", "b", "c", "d"]
        assert [e.position for e in await store.read_after(sid, 1, limit=2)] == [2, 3]
        assert await store.read_after(sid, 4, limit=10) == []
        info = await store.info(sid)
        assert info is not None
        assert info.last_position == 4

    async def test_reads_are_bounded_in_bytes(self, store: StreamStore) -> None:
        sid = await self.make(store)
        texts = ["x" * 100, "y" * 100, "é" * 100, "z" * 1000, "w"]  # "é" is 2 bytes in UTF-8
        assert await store.append(sid, events_from(1, *texts), lease=LEASE)
        assert [e.position for e in await store.read_after(sid, 0, limit=10, max_bytes=250)] == [1, 2]
        assert [e.position for e in await store.read_after(sid, 1, limit=10, max_bytes=300)] == [2, 3]
        # One event at least, however large.
        assert [e.position for e in await store.read_after(sid, 3, limit=10, max_bytes=10)] == [4]
        assert [e.position for e in await store.read_after(sid, 0, limit=10, max_bytes=10**9)] == [
            1,
            2,
            3,
            4,
            5,
        ]

    async def test_reads_of_a_watched_stream_are_bounded_in_bytes(self, store: StreamStore) -> None:
        # Regression: the Redis store's window of recent events (what a watched stream's readers read)
        # ignored max_bytes.
        sid = await self.make(store)
        async with store.watch(sid) as watch:
            assert await store.append(sid, events_from(1, "x" * 100, "y" * 100, "z" * 100), lease=LEASE)
            assert await within(watch.wait(0, 5.0))
            assert [e.position for e in await store.read_after(sid, 0, limit=10, max_bytes=250)] == [1, 2]
            assert [e.position for e in await store.read_after(sid, 2, limit=10, max_bytes=10)] == [3]

    async def test_data_and_event_names_round_trip(self, store: StreamStore) -> None:
        sid = await self.make(store)
        texts = ["", "line1\nline2", "crlf\r\nand cr\r", "ünïcødé ✓ 🚀", '{"json": [1, 2]}', " leading space"]
        stored = [StreamEvent(i + 1, t, "custom" if i % 2 else None) for i, t in enumerate(texts)]
        assert await store.append(sid, stored, lease=LEASE)
        assert await store.read_after(sid, 0, limit=100) == stored

    async def test_a_large_event_round_trips(self, store: StreamStore) -> None:
        sid = await self.make(store)
        big = "0123456789abcdef" * 65536  # 1 MiB
        assert await store.append(sid, events_from(1, big), lease=LEASE)
        assert [e.data for e in await store.read_after(sid, 0, limit=10, max_bytes=1024)] == [big]

    async def test_append_out_of_position_is_an_error_and_stores_nothing(self, store: StreamStore) -> None:
        sid = await self.make(store)
        await store.append(sid, events_from(1, "a"), lease=LEASE)
        with pytest.raises(Exception, match="position"):
            await store.append(sid, events_from(5, "e"), lease=LEASE)
        assert [e.data for e in await store.read_after(sid, 0, limit=10)] == ["a"]

    async def test_a_retried_batch_is_stored_once(self, store: StreamStore) -> None:
        # A producer retries a write whose reply was lost although the store ran it (a dropped
        # connection): the retry must renew the lease, not fail on the position or store the events twice.
        sid = await self.make(store)
        batch = events_from(1, "a", "b")
        assert await store.append(sid, batch, lease=LEASE)
        assert await store.append(sid, batch, lease=LEASE)
        assert await store.append(sid, events_from(3, "c"), lease=LEASE)
        stored = await store.read_after(sid, 0, limit=10)
        assert [(e.position, e.data) for e in stored] == [(1, "a"), (2, "b"), (3, "c")]

    # -- ending --

    async def test_finish_writes_one_terminal_event_after_the_last(self, store: StreamStore) -> None:
        sid = await self.make(store)
        await store.append(sid, events_from(1, "a", "b"), lease=LEASE)
        info = await store.finish(sid, "error", message="it broke")
        assert info is not None
        assert (info.status, info.last_position) == ("error", 3)
        again = await store.finish(sid, "cancelled")
        assert again is not None
        assert (again.status, again.last_position) == ("error", 3)
        stored = await store.read_after(sid, 0, limit=10)
        assert stored[2:] == [StreamEvent.terminal(3, "error", "it broke")]
        assert stored[-1].is_terminal

    async def test_append_after_the_end_is_refused(self, store: StreamStore) -> None:
        sid = await self.make(store)
        await store.finish(sid, "cancelled")
        assert not await store.append(sid, events_from(1, "late"), lease=LEASE)
        assert await store.read_after(sid, 0, limit=10) == [StreamEvent.terminal(1, "cancelled")]

    async def test_finish_if_lease_expired_spares_a_live_producer(self, store: StreamStore) -> None:
        sid = await self.make(store)
        info = await store.finish(sid, "interrupted", only_if_lease_expired=True)
        assert info is not None
        assert info.status == "running"

    async def test_finish_if_lease_expired_ends_a_dead_producer(self, store: StreamStore) -> None:
        sid = await self.make(store, lease=0.01)
        await asyncio.sleep(
            0.05
        )  # let the 10 ms lease lapse: this waits out a deadline, it does not synchronise
        info = await store.finish(sid, "interrupted", only_if_lease_expired=True)
        assert info is not None
        assert (info.status, info.last_position) == ("interrupted", 1)

    async def test_append_renews_the_lease(self, store: StreamStore) -> None:
        sid = await self.make(store, lease=0.05)
        await store.append(sid, [], lease=LEASE)
        await asyncio.sleep(0.1)
        info = await store.finish(sid, "interrupted", only_if_lease_expired=True)
        assert info is not None
        assert info.status == "running"

    async def test_ended_stream_expires_after_its_ttl(self, store: StreamStore) -> None:
        sid = await self.make(store, ttl=0.05)
        await store.finish(sid, "done")
        assert await store.info(sid) is not None
        await asyncio.sleep(0.2)
        assert await store.info(sid) is None
        assert await store.read_after(sid, 0, limit=10) == []

    async def test_lease_renewals_keep_the_events_alive(self, store: StreamStore) -> None:
        # Regression: empty appends renewed the meta record but let the events expire under a quiet producer.
        sid = await self.make(store, lease=0.3, ttl=0.1)
        await store.append(sid, events_from(1, "kept"), lease=0.3)
        for _ in range(6):
            await asyncio.sleep(0.1)  # waits out part of the 0.4 s expiry each time; renewals must push it on
            assert await store.append(sid, [], lease=0.3)
        assert [e.data for e in await store.read_after(sid, 0, limit=10)] == ["kept"]

    # -- keys: one running stream per key --

    async def test_a_key_names_its_running_stream_until_it_ends(self, store: StreamStore) -> None:
        assert await store.key_holder("chat") is None
        sid = await self.make(store, key="chat")
        assert await store.key_holder("chat") == sid
        await store.finish(sid, "done")
        assert await store.key_holder("chat") is None

    async def test_a_new_stream_of_a_key_cancels_the_running_one(self, store: StreamStore) -> None:
        first = await self.make(store, key="chat")
        second = new_stream_id("chat")
        assert await store.create(second, route="r", key="chat", lease=LEASE, ttl=TTL) == first
        old = await store.info(first)
        assert old is not None
        assert old.status == "cancelled"
        assert (await store.read_after(first, 0, limit=10))[-1] == StreamEvent.terminal(1, "cancelled")
        assert await store.key_holder("chat") == second
        # The cancelled stream's end does not release the key its successor holds.
        await store.finish(first, "done")
        assert await store.key_holder("chat") == second

    async def test_reject_leaves_the_running_stream_alone(self, store: StreamStore) -> None:
        first = await self.make(store, key="chat")
        second = new_stream_id("chat")
        with pytest.raises(KeyConflictError) as raised:
            await store.create(second, route="r", key="chat", lease=LEASE, ttl=TTL, on_conflict="reject")
        assert raised.value.stream_id == first
        assert await store.info(second) is None
        info = await store.info(first)
        assert info is not None
        assert info.is_running
        assert await store.key_holder("chat") == first

    async def test_a_key_whose_stream_ended_is_free(self, store: StreamStore) -> None:
        first = await self.make(store, key="chat")
        await store.finish(first, "done")
        second = new_stream_id("chat")
        assert (
            await store.create(second, route="r", key="chat", lease=LEASE, ttl=TTL, on_conflict="reject")
            is None
        )

    async def test_a_key_whose_producer_died_ends_interrupted(self, store: StreamStore) -> None:
        first = await self.make(store, key="chat", lease=0.01)
        await asyncio.sleep(0.05)  # the lease lapses
        second = new_stream_id("chat")
        assert (
            await store.create(second, route="r", key="chat", lease=LEASE, ttl=TTL, on_conflict="reject")
            is None
        )
        old = await store.info(first)
        assert old is not None
        assert old.status == "interrupted"

    async def test_concurrent_starts_of_one_key_leave_one_running(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        barrier = asyncio.Barrier(20)

        async def start(index: int) -> str:
            sid = new_stream_id("chat")
            await barrier.wait()
            await (store if index % 2 else peer_store).create(
                sid, route="r", key="chat", lease=LEASE, ttl=TTL
            )
            return sid

        ids = await within(asyncio.gather(*(start(i) for i in range(20))))
        infos = [await store.info(sid) for sid in ids]
        running = [info.stream_id for info in infos if info is not None and info.is_running]
        assert len(running) == 1
        assert await store.key_holder("chat") == running[0]
        assert sorted(info.status for info in infos if info is not None) == ["cancelled"] * 19 + ["running"]
