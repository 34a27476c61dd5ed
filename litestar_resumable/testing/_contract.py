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
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import ClassVar, TypeVar

import pytest
import pytest_asyncio

from litestar_resumable._errors import KeyConflictError, StreamClosedError, StreamExistsError
from litestar_resumable._events import StreamEvent
from litestar_resumable._ids import new_stream_id
from litestar_resumable._store.base import DURABLE_FORMAT, DurableStream, Fork, Producer, StreamStore
from litestar_resumable._writer import StreamWriter

__all__ = ("StoreContract",)

T = TypeVar("T")

LEASE = 30.0
TTL = 60.0


def _events(first: int, *texts: str) -> list[StreamEvent]:
    return [StreamEvent(first + i, text) for i, text in enumerate(texts)]


async def _within(awaitable: Awaitable[T], seconds: float = 10.0) -> T:
    async with asyncio.timeout(seconds):
        return await awaitable


@pytest.mark.asyncio
class StoreContract:
    """Subclass it and override the ``store`` fixture; every test method then runs on your store."""

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
        assert not await store.append(sid, _events(1, "a"), lease=LEASE)

    async def test_create_twice_is_refused(self, store: StreamStore) -> None:
        sid = await self.make(store)
        with pytest.raises(StreamExistsError):
            await store.create(sid, route="r", lease=LEASE, ttl=TTL)

    # -- appending and reading --

    async def test_append_and_read_in_order_with_limits(self, store: StreamStore) -> None:
        sid = await self.make(store)
        assert await store.append(sid, _events(1, "a", "b", "c"), lease=LEASE)
        assert await store.append(sid, _events(4, "d"), lease=LEASE)
        assert [e.data for e in await store.read_after(sid, 0, limit=100)] == ["a", "b", "c", "d"]
        assert [e.position for e in await store.read_after(sid, 1, limit=2)] == [2, 3]
        assert await store.read_after(sid, 4, limit=10) == []
        info = await store.info(sid)
        assert info is not None
        assert info.last_position == 4

    async def test_reads_are_bounded_in_bytes(self, store: StreamStore) -> None:
        sid = await self.make(store)
        texts = ["x" * 100, "y" * 100, "é" * 100, "z" * 1000, "w"]  # "é" is 2 bytes in UTF-8
        assert await store.append(sid, _events(1, *texts), lease=LEASE)
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
            assert await store.append(sid, _events(1, "x" * 100, "y" * 100, "z" * 100), lease=LEASE)
            assert await _within(watch.wait(0, 5.0))
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
        assert await store.append(sid, _events(1, big), lease=LEASE)
        assert [e.data for e in await store.read_after(sid, 0, limit=10, max_bytes=1024)] == [big]

    async def test_append_out_of_position_is_an_error_and_stores_nothing(self, store: StreamStore) -> None:
        sid = await self.make(store)
        await store.append(sid, _events(1, "a"), lease=LEASE)
        with pytest.raises(Exception, match="position"):
            await store.append(sid, _events(5, "e"), lease=LEASE)
        assert [e.data for e in await store.read_after(sid, 0, limit=10)] == ["a"]

    async def test_a_retried_batch_is_stored_once(self, store: StreamStore) -> None:
        # A producer retries a write whose reply was lost although the store ran it (a dropped
        # connection): the retry must renew the lease, not fail on the position or store the events twice.
        sid = await self.make(store)
        batch = _events(1, "a", "b")
        assert await store.append(sid, batch, lease=LEASE)
        assert await store.append(sid, batch, lease=LEASE)
        assert await store.append(sid, _events(3, "c"), lease=LEASE)
        stored = await store.read_after(sid, 0, limit=10)
        assert [(e.position, e.data) for e in stored] == [(1, "a"), (2, "b"), (3, "c")]

    # -- ending --

    async def test_finish_writes_one_terminal_event_after_the_last(self, store: StreamStore) -> None:
        sid = await self.make(store)
        await store.append(sid, _events(1, "a", "b"), lease=LEASE)
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
        assert not await store.append(sid, _events(1, "late"), lease=LEASE)
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
        await store.append(sid, _events(1, "kept"), lease=0.3)
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

        ids = await _within(asyncio.gather(*(start(i) for i in range(20))))
        infos = [await store.info(sid) for sid in ids]
        running = [info.stream_id for info in infos if info is not None and info.is_running]
        assert len(running) == 1
        assert await store.key_holder("chat") == running[0]
        assert sorted(info.status for info in infos if info is not None) == ["cancelled"] * 19 + ["running"]

    # -- writers elsewhere: claims, and StreamWriter on this store --

    async def test_one_of_concurrent_claims_takes_an_opened_stream(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        sid = await self.make(store, claimed=False)
        barrier = asyncio.Barrier(10)

        async def claim(index: int) -> bool:
            await barrier.wait()
            return await (store if index % 2 else peer_store).claim(sid)

        assert sum(await _within(asyncio.gather(*(claim(i) for i in range(10))))) == 1
        assert not await store.claim(sid)  # taken: a later writer is refused too

    async def test_a_claim_renews_the_lease(self, store: StreamStore) -> None:
        sid = await self.make(store, lease=0.3, claimed=False)
        await asyncio.sleep(0.2)  # waits out most of the lease; the claim must renew it
        assert await store.claim(sid)
        await asyncio.sleep(0.2)
        info = await store.finish(sid, "interrupted", only_if_lease_expired=True)
        assert info is not None
        assert (info.status, info.lease) == ("running", 0.3)

    async def test_an_ended_or_unclaimed_stream_cannot_be_claimed(self, store: StreamStore) -> None:
        running = await self.make(store)  # a producer's stream: claimed at creation
        ended = await self.make(store, claimed=False)
        await store.finish(ended, "cancelled")
        lapsed = await self.make(store, lease=0.01, claimed=False)
        await asyncio.sleep(0.05)  # no writer claimed it within its lease
        for sid in (running, ended, lapsed, new_stream_id(None)):
            assert not await store.claim(sid)
        statuses = [info.status for info in [await store.info(running), await store.info(ended)] if info]
        assert statuses == ["running", "cancelled"]

    async def test_a_second_writer_is_refused_and_the_first_goes_on(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        sid = await self.make(store, claimed=False)
        async with StreamWriter(store, sid) as first:
            await first.write("a")
            with pytest.raises(StreamClosedError, match="another writer has claimed it"):
                async with StreamWriter(peer_store, sid):
                    pytest.fail("a second writer entered")
            await first.write("b")
        assert [e.data for e in await store.read_after(sid, 0, limit=10)] == ["a", "b", '{"status":"done"}']

    async def test_a_writer_after_the_end_is_refused_and_changes_nothing(self, store: StreamStore) -> None:
        sid = await self.make(store, claimed=False)
        await store.finish(sid, "cancelled")
        with pytest.raises(StreamClosedError, match="it has ended"):
            async with StreamWriter(store, sid) as writer:
                await writer.write("late")
        info = await store.info(sid)
        assert info is not None
        assert (info.status, info.last_position) == ("cancelled", 1)

    async def test_a_writer_that_was_blocked_past_its_lease_stops(self, store: StreamStore) -> None:
        sid = await self.make(store, lease=0.2, claimed=False)
        async with StreamWriter(store, sid) as writer:
            await writer.write("before")
            await _within(self._stored(store, sid, 1))
            time.sleep(0.4)  # noqa: ASYNC251 - the writer's loop is blocked (sync code in a worker), no renewal
            info = await store.finish(
                sid, "interrupted", only_if_lease_expired=True
            )  # a reader gives up on it
            assert info is not None
            assert info.status == "interrupted"
            await _within(writer.wait_cancelled())  # it hears of the end, or its renewal is refused
            with pytest.raises(StreamClosedError):
                await writer.write("after")
        events = await store.read_after(sid, 0, limit=10)
        assert [e.data for e in events] == ["before", '{"status":"interrupted"}']

    @staticmethod
    async def _stored(store: StreamStore, sid: str, position: int) -> None:
        async with store.watch(sid) as watch:
            while (info := await store.info(sid)) is not None and info.last_position < position:
                await watch.wait(info.last_position, 1.0)

    # -- counters (shared limits) --

    async def test_a_counter_counts_members_up_to_its_limit(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        assert await store.take_slot("c", "a", 2, ttl=TTL)
        assert await peer_store.take_slot("c", "b", 2, ttl=TTL)
        assert not await store.take_slot("c", "x", 2, ttl=TTL)
        assert await store.take_slot("c", "a", 2, ttl=TTL)  # counted already: renewed, not refused
        await peer_store.drop_slot("c", "b")
        assert await store.take_slot("c", "x", 2, ttl=TTL)
        assert await store.take_slot("other", "y", 1, ttl=TTL)

    async def test_counted_members_expire_unless_renewed(self, store: StreamStore) -> None:
        assert await store.take_slot("c", "kept", 2, ttl=0.3)
        assert await store.take_slot("c", "dropped", 2, ttl=0.3)
        for _ in range(3):
            await asyncio.sleep(0.15)  # waits out half a ttl each time; the renewals must push it on
            await store.renew_slots("c", ["kept"], ttl=0.3)
        assert await store.take_slot("c", "new", 2, ttl=0.3)  # "dropped" expired: room for one
        assert not await store.take_slot("c", "more", 2, ttl=0.3)  # "kept" still counts

    async def test_concurrent_takes_never_pass_the_limit(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        barrier = asyncio.Barrier(20)

        async def take(index: int) -> bool:
            await barrier.wait()
            return await (store if index % 2 else peer_store).take_slot("c", f"m{index}", 3, ttl=TTL)

        taken = await _within(asyncio.gather(*(take(i) for i in range(20))))
        assert sum(taken) == 3

    # -- watching --

    async def test_watch_wakes_on_an_append_from_another_worker(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        sid = await self.make(store)
        async with store.watch(sid) as watch:
            assert watch.stream_id == sid
            waiting = asyncio.create_task(watch.wait(0, 30.0))
            await asyncio.sleep(0)
            assert not waiting.done()
            await peer_store.append(sid, _events(1, "from the peer"), lease=LEASE)
            assert await _within(waiting) is True
            assert [e.data for e in await store.read_after(sid, 0, limit=10)] == ["from the peer"]

    async def test_watch_wakes_on_the_terminal_event(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        sid = await self.make(store)
        await store.append(sid, _events(1, "a"), lease=LEASE)
        async with store.watch(sid) as watch:
            waiting = asyncio.create_task(watch.wait(1, 30.0))
            await asyncio.sleep(0)
            await peer_store.finish(sid, "cancelled")
            assert await _within(waiting) is True
            assert await _within(watch.ended.wait()) is True
            assert [e.event for e in await store.read_after(sid, 1, limit=10)] == ["end"]

    async def test_watch_wait_times_out_when_nothing_happens(self, store: StreamStore) -> None:
        sid = await self.make(store)
        async with store.watch(sid) as watch:
            assert await _within(watch.wait(0, 0.05)) is False

    async def test_watchers_read_a_long_stream_without_gap_or_duplicate(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        sid = await self.make(store)
        total = 3000

        async def produce() -> None:
            for first in range(1, total + 1, 100):
                texts = (str(p) for p in range(first, first + 100))
                await peer_store.append(sid, _events(first, *texts), lease=LEASE)
                await asyncio.sleep(0)
            await peer_store.finish(sid, "done")

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
        await _within(produce(), 30)
        for seen in await _within(asyncio.gather(*readers), 30):
            assert seen == list(range(1, total + 2))

    async def test_concurrent_lease_checks_share_one_answer(self, store: StreamStore) -> None:
        # Regression: readers asking while another reader's check ran got a placeholder None ("gone").
        sid = await self.make(store)
        async with store.watch(sid) as first, store.watch(sid) as second:
            checks = (w.interrupt_if_abandoned(60.0) for w in (first, second, first, second))
            answers = await _within(asyncio.gather(*checks))
        assert all(info is not None and info.is_running for info in answers)

    async def test_a_watch_of_a_gone_stream_does_not_wake_at_once(self, store: StreamStore) -> None:
        # Regression: the memory store's watch answered "something new" at once for a stream that had
        # expired, so its follower spun until its next lease check.
        sid = await self.make(store, ttl=0.05)
        await store.finish(sid, "done")
        async with store.watch(sid) as watch:
            await asyncio.sleep(0.2)  # the stream expires
            assert await store.info(sid) is None
            assert await _within(watch.wait(1, 0.05)) is False

    # -- durable streams (litestar_resumable.durable_streams); skipped for a store that does not keep them --

    async def make_durable(
        self,
        store: StreamStore,
        name: str | None = None,
        *,
        content_type: str = "text/plain",
        data: tuple[str, ...] = (),
        close: bool = False,
        ttl: int | None = None,
        expires_at: float | None = None,
    ) -> tuple[bool, DurableStream]:
        """Create a durable stream as the routes do: its id takes its name's tag (``new_stream_id(name)``)."""
        name = name or f"-:stream-{uuid.uuid4().hex}"
        if type(store).create_durable is StreamStore.create_durable:
            pytest.skip(f"{type(store).__name__} does not keep durable streams (durable_streams_router)")
        return await store.create_durable(
            new_stream_id(name) + "-d",
            name=name,
            content_type=content_type,
            data=[(None, text) for text in data],
            close=close,
            ttl=ttl,
            expires_at=expires_at,
        )

    async def test_a_durable_stream_is_created_once_per_name(self, store: StreamStore) -> None:
        created, stream = await self.make_durable(store, "-:chat", data=("a", "b"))
        assert created
        assert (stream.name, stream.content_type, stream.status, stream.last_position) == (
            "-:chat",
            "text/plain",
            "running",
            2,
        )
        assert await store.durable_id("-:chat") == stream.stream_id
        again, existing = await self.make_durable(
            store, "-:chat", content_type="application/json", close=True
        )
        assert not again
        assert (existing.stream_id, existing.content_type, existing.closed) == (
            stream.stream_id,
            "text/plain",
            False,
        )
        info = await store.info(stream.stream_id)
        assert info is not None
        assert (info.format, info.last_position, info.is_running) == (DURABLE_FORMAT, 2, True)
        assert await store.durable_id("-:other") is None

    async def test_a_durable_stream_is_never_interrupted_by_lease_checks(self, store: StreamStore) -> None:
        _, stream = await self.make_durable(store)
        info = await store.finish(stream.stream_id, "interrupted", only_if_lease_expired=True)
        assert info is not None
        assert info.is_running

    async def test_durable_appends_take_the_next_positions_byte_for_byte(self, store: StreamStore) -> None:
        _, stream = await self.make_durable(store, data=("first",))
        sid = stream.stream_id
        odd = "\x00\xff\r\n é 🙂 \u2028"
        result = await store.append_durable(
            sid, [(None, "second"), ("b", odd)], content_type="TEXT/Plain; x=y"
        )
        assert (result.outcome, result.tail, result.closed) == ("appended", 3, False)
        state, events = await store.read_durable(sid, 1, limit=10)
        assert state is not None
        assert state.last_position == 3
        assert [(e.position, e.data, e.event) for e in events] == [(2, "second", None), (3, odd, "b")]
        assert (await store.read_durable(sid, 0, limit=1))[1][0].data == "first"

    async def test_concurrent_durable_appends_all_land_once(self, store: StreamStore) -> None:
        _, stream = await self.make_durable(store)
        texts = [f"w{i}" for i in range(40)]
        results = await _within(
            asyncio.gather(
                *(
                    store.append_durable(stream.stream_id, [(None, t)], content_type="text/plain")
                    for t in texts
                )
            )
        )
        assert sorted(r.tail for r in results) == list(range(1, 41))
        _, events = await store.read_durable(stream.stream_id, 0, limit=100)
        assert sorted(e.data for e in events) == sorted(texts)

    async def test_a_durable_append_of_another_media_type_is_refused(self, store: StreamStore) -> None:
        _, stream = await self.make_durable(store, content_type="application/json", data=("1",))
        result = await store.append_durable(stream.stream_id, [(None, "x")], content_type="text/plain")
        assert (result.outcome, result.tail) == ("content_type", 1)
        assert (await store.read_durable(stream.stream_id, 0, limit=10))[0].last_position == 1  # type: ignore[union-attr]

    async def test_closing_a_durable_stream(self, store: StreamStore) -> None:
        _, stream = await self.make_durable(store, data=("a",))
        sid = stream.stream_id
        closing = await store.append_durable(sid, [(None, "last")], content_type="text/plain", close=True)
        assert (closing.outcome, closing.tail, closing.closed) == ("appended", 2, True)
        state, events = await store.read_durable(sid, 0, limit=10)
        assert state is not None
        assert (state.closed, state.tail, state.last_position) == (True, 2, 3)
        assert events[-1].is_terminal
        refused = await store.append_durable(sid, [(None, "more")], content_type="text/plain")
        assert (refused.outcome, refused.tail, refused.closed) == ("closed", 2, True)
        again = await store.append_durable(sid, [], content_type="", close=True)
        assert (again.outcome, again.tail, again.closed) == ("duplicate", 2, True)
        assert (await store.read_durable(sid, 0, limit=10))[0].last_position == 3  # type: ignore[union-attr]

    async def test_a_durable_stream_created_closed(self, store: StreamStore) -> None:
        created, stream = await self.make_durable(store, data=("only",), close=True)
        assert created
        assert (stream.closed, stream.tail, stream.last_position) == (True, 1, 2)

    async def test_producer_sequence_rules(self, store: StreamStore) -> None:
        _, stream = await self.make_durable(store)
        sid = stream.stream_id

        async def send(
            producer: str, epoch: int, seq: int, *, close: bool = False
        ) -> tuple[str, int | None, int | None]:
            result = await store.append_durable(
                sid,
                [(None, f"{producer}{epoch}.{seq}")],
                content_type="text/plain",
                producer=Producer(producer, epoch, seq),
                close=close,
            )
            return result.outcome, result.producer_epoch, result.producer_seq

        assert await send("p", 0, 1) == ("seq_gap", None, 0)  # a new producer starts at 0
        assert await send("p", 0, 0) == ("appended", 0, 0)
        assert await send("p", 0, 1) == ("appended", 0, 1)
        assert await send("p", 0, 0) == ("duplicate", 0, 1)  # a retry: the highest accepted comes back
        assert await send("p", 0, 3) == ("seq_gap", None, 2)
        assert await send("q", 5, 0) == ("appended", 5, 0)  # producers are independent
        assert await send("p", 1, 2) == ("epoch_restart", None, None)
        assert await send("p", 2, 0) == ("appended", 2, 0)
        assert await send("p", 1, 0) == ("stale_epoch", 2, None)
        _, events = await store.read_durable(sid, 0, limit=10)
        assert [e.data for e in events] == ["p0.0", "p0.1", "q5.0", "p2.0"]
        assert await send("p", 2, 1, close=True) == ("appended", 2, 1)
        assert await send("p", 2, 1, close=True) == ("duplicate", None, 1)  # the retry of the closing append
        assert await send("p", 2, 2) == ("closed", None, None)
        assert await send("q", 5, 1) == ("closed", None, None)

    async def test_stream_seq_grows_byte_by_byte(self, store: StreamStore) -> None:
        _, stream = await self.make_durable(store)

        async def send(seq: str) -> str:
            result = await store.append_durable(
                stream.stream_id, [(None, seq)], content_type="text/plain", stream_seq=seq
            )
            return result.outcome

        # "2" > "10" and "a" > "B", as bytes; neither as numbers or in a collation.
        outcomes = [await send(seq) for seq in ("09", "10", "10", "2", "B", "a", "B", "a0")]
        assert outcomes == [
            "appended",
            "appended",
            "stream_seq",
            "appended",
            "appended",
            "appended",
            "stream_seq",
            "appended",
        ]

    async def test_a_durable_stream_expires_at_its_time_unless_read(self, store: StreamStore) -> None:
        _, stream = await self.make_durable(store, data=("a",), expires_at=time.time() + 0.2)
        state, _ = await store.read_durable(stream.stream_id, 0, limit=1)
        assert state is not None
        assert state.expires_at is not None
        await asyncio.sleep(0.4)
        assert (await store.read_durable(stream.stream_id, 0, limit=1))[0] is None
        assert await store.durable_id(stream.name) is None

    async def test_deleting_a_durable_stream_frees_its_name(self, store: StreamStore) -> None:
        _, stream = await self.make_durable(store, "-:gone", data=("old",))
        assert await store.delete_durable(stream.stream_id)
        assert not await store.delete_durable(stream.stream_id)
        assert await store.durable_id("-:gone") is None
        assert await store.info(stream.stream_id) is None
        created, again = await self.make_durable(store, "-:gone", data=("new",))
        assert created
        assert again.stream_id != stream.stream_id
        _, events = await store.read_durable(again.stream_id, 0, limit=10)
        assert [e.data for e in events] == ["new"]

    async def test_only_durable_streams_are_read_or_deleted_as_durable(self, store: StreamStore) -> None:
        await self.make_durable(store)  # (skips a store without them)
        sid = await self.make(store)
        assert await store.read_durable(sid, 0, limit=1) == (None, [])
        assert not await store.delete_durable(sid)
        assert await store.info(sid) is not None

    async def test_a_watch_wakes_on_a_durable_append(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        _, stream = await self.make_durable(store)
        async with store.watch(stream.stream_id) as watch:
            await peer_store.append_durable(stream.stream_id, [(None, "x")], content_type="text/plain")
            assert await _within(watch.wait(0, 5.0))

    async def make_fork(
        self, store: StreamStore, source: DurableStream, position: int, *data: str
    ) -> tuple[bool, DurableStream]:
        name = f"-:fork-{uuid.uuid4().hex}"
        return await store.create_durable(
            new_stream_id(name) + "-d",
            name=name,
            content_type=source.content_type,
            data=[(None, text) for text in data],
            fork=Fork(source.stream_id, position, f"{source.stream_id}|{position}"),
        )

    async def test_a_fork_starts_with_its_sources_first_events(self, store: StreamStore) -> None:
        _, source = await self.make_durable(store, data=("a", "b", "c"))
        created, fork = await self.make_fork(store, source, 2, "x")
        assert created
        assert (fork.fork, fork.last_position, fork.closed) == (f"{source.stream_id}|2", 3, False)
        await store.append_durable(source.stream_id, [(None, "d")], content_type="text/plain")
        await store.append_durable(fork.stream_id, [(None, "y")], content_type="text/plain")
        _, forked = await store.read_durable(fork.stream_id, 0, limit=10)
        assert [(e.position, e.data) for e in forked] == [(1, "a"), (2, "b"), (3, "x"), (4, "y")]
        _, kept = await store.read_durable(source.stream_id, 0, limit=10)
        assert [e.data for e in kept] == ["a", "b", "c", "d"]

    async def test_a_fork_of_a_missing_source_or_past_its_end_is_refused(self, store: StreamStore) -> None:
        _, source = await self.make_durable(store, data=("a",))
        with pytest.raises(ValueError, match="fork"):
            await self.make_fork(store, source, 2)
        assert await store.delete_durable(source.stream_id)
        with pytest.raises(ValueError, match="fork"):
            await self.make_fork(store, source, 1)

    async def test_a_source_is_kept_deleted_until_its_last_fork_goes(self, store: StreamStore) -> None:
        _, source = await self.make_durable(store, data=("a",))
        _, first = await self.make_fork(store, source, 1)
        _, second = await self.make_fork(store, source, 0)
        assert await store.delete_durable(source.stream_id)
        state, _ = await store.read_durable(source.stream_id, 0, limit=1)
        assert state is not None
        assert state.deleted
        assert await store.durable_id(source.name) == source.stream_id  # the name stays taken
        appended = await store.append_durable(source.stream_id, [(None, "b")], content_type="text/plain")
        assert appended.outcome == "deleted"
        assert not await store.delete_durable(source.stream_id)
        with pytest.raises(ValueError, match="fork"):
            await self.make_fork(store, source, 0)
        assert await store.delete_durable(first.stream_id)
        assert await store.durable_id(source.name) == source.stream_id
        assert await store.delete_durable(second.stream_id)
        assert await store.durable_id(source.name) is None  # the last fork took its deleted source along
        assert await store.info(source.stream_id) is None
