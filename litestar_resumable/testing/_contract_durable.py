"""The store contract's tests of durable streams (what ``litestar_resumable.durable_streams`` needs).

Part of ``StoreContract`` (``_contract``), which inherits them; each test skips for a store that does not
keep durable streams (one that does not override ``StreamStore.create_durable``).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from litestar_resumable._ids import new_stream_id
from litestar_resumable._store.base import StreamStore
from litestar_resumable._store.durable_types import DURABLE_FORMAT, DurableStream, Fork, Producer
from litestar_resumable.testing._contract_base import ContractBase, within


class DurableStoreContract(ContractBase):
    """Durable streams: created once per name, appended, closed, with producers, expiring, deleted, forked;
    skipped for a store that does not keep them."""

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
        results = await within(
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
            assert await within(watch.wait(0, 5.0))

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
