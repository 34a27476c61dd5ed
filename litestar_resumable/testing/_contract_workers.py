"""The store contract's tests of what workers sharing a store rely on: claims and writers, counters, watches.

Part of ``StoreContract`` (``_contract``), which inherits them; with ``peer_store`` a second instance on the
same backend, they check what another worker sees.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from litestar_resumable._errors import StreamClosedError
from litestar_resumable._ids import new_stream_id
from litestar_resumable._store.base import StreamStore
from litestar_resumable._writer import StreamWriter
from litestar_resumable.testing._contract_base import LEASE, TTL, ContractBase, events_from, within


class WorkersStoreContract(ContractBase):
    """Claims and ``StreamWriter`` on the store, shared counters, and watches woken by another worker."""

    # -- writers elsewhere: claims, and StreamWriter on this store --

    async def test_one_of_concurrent_claims_takes_an_opened_stream(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        sid = await self.make(store, claimed=False)
        barrier = asyncio.Barrier(10)

        async def claim(index: int) -> bool:
            await barrier.wait()
            return await (store if index % 2 else peer_store).claim(sid)

        assert sum(await within(asyncio.gather(*(claim(i) for i in range(10))))) == 1
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
            await within(self._stored(store, sid, 1))
            time.sleep(0.4)  # noqa: ASYNC251 - the writer's loop is blocked (sync code in a worker), no renewal
            info = await store.finish(
                sid, "interrupted", only_if_lease_expired=True
            )  # a reader gives up on it
            assert info is not None
            assert info.status == "interrupted"
            await within(writer.wait_cancelled())  # it hears of the end, or its renewal is refused
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

        taken = await within(asyncio.gather(*(take(i) for i in range(20))))
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
            await peer_store.append(sid, events_from(1, "from the peer"), lease=LEASE)
            assert await within(waiting) is True
            assert [e.data for e in await store.read_after(sid, 0, limit=10)] == ["from the peer"]

    async def test_watch_wakes_on_the_terminal_event(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        sid = await self.make(store)
        await store.append(sid, events_from(1, "a"), lease=LEASE)
        async with store.watch(sid) as watch:
            waiting = asyncio.create_task(watch.wait(1, 30.0))
            await asyncio.sleep(0)
            await peer_store.finish(sid, "cancelled")
            assert await within(waiting) is True
            assert await within(watch.ended.wait()) is True
            assert [e.event for e in await store.read_after(sid, 1, limit=10)] == ["end"]

    async def test_watch_wait_times_out_when_nothing_happens(self, store: StreamStore) -> None:
        sid = await self.make(store)
        async with store.watch(sid) as watch:
            assert await within(watch.wait(0, 0.05)) is False

    async def test_watchers_read_a_long_stream_without_gap_or_duplicate(
        self, store: StreamStore, peer_store: StreamStore
    ) -> None:
        sid = await self.make(store)
        total = 3000

        async def produce() -> None:
            for first in range(1, total + 1, 100):
                texts = (str(p) for p in range(first, first + 100))
                await peer_store.append(sid, events_from(first, *texts), lease=LEASE)
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
        await within(produce(), 30)
        for seen in await within(asyncio.gather(*readers), 30):
            assert seen == list(range(1, total + 2))

    async def test_concurrent_lease_checks_share_one_answer(self, store: StreamStore) -> None:
        # Regression: readers asking while another reader's check ran got a placeholder None ("gone").
        sid = await self.make(store)
        async with store.watch(sid) as first, store.watch(sid) as second:
            checks = (w.interrupt_if_abandoned(60.0) for w in (first, second, first, second))
            answers = await within(asyncio.gather(*checks))
        assert all(info is not None and info.is_running for info in answers)

    async def test_a_watch_of_a_gone_stream_does_not_wake_at_once(self, store: StreamStore) -> None:
        # Regression: the memory store's watch answered "something new" at once for a stream that had
        # expired, so its follower spun until its next lease check.
        sid = await self.make(store, ttl=0.05)
        await store.finish(sid, "done")
        async with store.watch(sid) as watch:
            await asyncio.sleep(0.2)  # the stream expires
            assert await store.info(sid) is None
            assert await within(watch.wait(1, 0.05)) is False
