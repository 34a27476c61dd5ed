"""Generations from start to exit: very short ones all exit and release their keys, and every buffer on
the way (a producer's batch, a follower's read, the Redis store's window) is bounded in bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from _support.asgi import serve, within
from _support.reading import ended, read_until
from litestar import Litestar, get

from litestar_resumable import (
    MemoryStreamStore,
    RedisStreamStore,
    ResumablePlugin,
    StreamEvent,
    StreamStore,
    resumable,
)
from litestar_resumable._ids import new_stream_id
from litestar_resumable.testing import read_sse

KIB = 1024


async def all_exited(plugin: ResumablePlugin) -> None:
    """Return once the plugin runs no producer (each exits right after its terminal event is stored)."""
    while plugin.generations.producers:
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("concurrent", [False, True])
async def test_many_very_short_generations_all_exit_and_release_their_keys(
    store: StreamStore, concurrent: bool
) -> None:
    # Regression: about 1 in 15 generations of one or two items left its producer stuck for good on the
    # Redis store (asyncio.wait_for swallowed the cancellation of the producer's guard), holding its key.
    @get("/once/{chat:str}")
    @resumable(key="chat")
    async def once(chat: str, n: int = 1) -> AsyncIterator[str]:
        for i in range(n):
            yield f"{chat} {i}"

    plugin = ResumablePlugin(store)
    chats = [f"chat-{i}" for i in range(60)]
    async with serve(Litestar([once], plugins=[plugin])) as client:

        async def one(index: int, chat: str) -> str:
            response = await read_sse(client, "GET", f"/once/{chat}", params={"n": 1 + index % 2})
            assert response.terminal is not None
            return response.terminal.status

        if concurrent:
            statuses = await within(asyncio.gather(*(one(i, c) for i, c in enumerate(chats))), 60)
        else:
            statuses = [await within(one(i, c)) for i, c in enumerate(chats)]
        assert statuses == ["done"] * len(chats)
        await within(all_exited(plugin))
        assert plugin.generations.producers == {}
        assert [await store.key_holder(f"-:{chat}") for chat in chats] == [None] * len(chats)


class Recording:
    """Wraps a store's appends and reads, keeping the bytes of each."""

    def __init__(self, store: StreamStore) -> None:
        self.appends: list[list[int]] = []
        self.reads: list[list[int]] = []
        append, read_after = store.append, store.read_after

        async def recorded_append(stream_id: str, events: Sequence[StreamEvent], *, lease: float) -> bool:
            if events:
                self.appends.append([event.nbytes for event in events])
            return await append(stream_id, events, lease=lease)

        async def recorded_read(stream_id: str, position: int, **options: Any) -> list[StreamEvent]:
            events = await read_after(stream_id, position, **options)
            if events:
                self.reads.append([event.nbytes for event in events])
            return events

        store.append = recorded_append  # type: ignore[method-assign]
        store.read_after = recorded_read  # type: ignore[method-assign]


def within_budget(batches: list[list[int]], budget: int) -> bool:
    """Every batch fits the budget, or is one event larger than it."""
    return all(sum(batch) <= budget or len(batch) == 1 for batch in batches)


@pytest.mark.parametrize("size", [100 * KIB, 1024 * KIB])
async def test_writes_and_reads_are_bounded_in_bytes(store: StreamStore, size: int) -> None:
    recording = Recording(store)

    @get("/big")
    @resumable(max_batch_bytes=256 * KIB, max_read_bytes=300 * KIB, max_event_bytes=2 * 1024 * KIB)
    async def big(n: int) -> AsyncIterator[str]:
        for i in range(n):
            yield str(i % 10) * size

    async with serve(Litestar([big], plugins=[ResumablePlugin(store)])) as client:
        response = await within(read_sse(client, "GET", "/big", params={"n": 30}), 60)
        stream_id = response.stream_id
        replay = await within(read_sse(client, "GET", f"/resumable/streams/{stream_id}"), 60)
    for events in (response.events, replay.events):
        assert [event.data for event in events[:-1]] == [str(i % 10) * size for i in range(30)]
    assert sum(len(batch) for batch in recording.appends) == 30
    assert within_budget(recording.appends, 256 * KIB), recording.appends
    assert within_budget(recording.reads, 300 * KIB), recording.reads
    assert len(recording.appends) > 1


async def test_the_redis_window_keeps_at_most_its_bytes(redis_prefix: str) -> None:
    store = RedisStreamStore.from_url(
        "redis://127.0.0.1:6379/0", key_prefix=redis_prefix, window_bytes=300 * KIB
    )

    stream_id = new_stream_id()
    try:
        await store.create(stream_id, route="r", lease=30, ttl=60)
        async with store.watch(stream_id) as watch:
            for position in range(1, 21):
                await store.append(stream_id, [StreamEvent(position, "x" * (100 * KIB))], lease=30)
            assert await within(watch.wait(19, 5.0))
            window = store._watches.get(stream_id)
            assert window is not None
            assert window.hi == 20
            assert window.nbytes <= 300 * KIB
            assert len(window.events) == 3
            # Reads from before the window go to Redis, and still get every event.
            assert [e.position for e in await store.read_after(stream_id, 0, limit=100)] == list(range(1, 21))
    finally:
        await store.close()


class LossyStore(MemoryStreamStore):
    """A memory store that can forget a stream's newest events, as a Redis failover with asynchronous
    replication can (the promoted replica had not received them)."""

    def lose_after(self, stream_id: str, position: int) -> None:
        del self._streams[stream_id].events[position:]


async def test_events_lost_by_the_store_end_the_stream_interrupted_and_no_reader_waits_forever() -> None:
    store = LossyStore()
    proceed = asyncio.Event()

    @get("/answer")
    @resumable(lease=0.2)
    async def answer() -> AsyncIterator[str]:
        for i in range(10):
            yield str(i)
        await proceed.wait()
        yield "after the loss"

    async with serve(Litestar([answer], plugins=[ResumablePlugin(store)])) as client:
        async with client.stream("GET", "/answer") as response:
            stream_id = response.headers["x-resumable-stream-id"]
            seen = await within(read_until(response, lambda events: len(events) >= 10))
            store.lose_after(stream_id, 5)
            proceed.set()  # the producer's next write finds the store five events short
            events = await within(read_until(response, ended))
        replay = await within(read_sse(client, "GET", f"/resumable/streams/{stream_id}"))
    # The reader that had seen events the store lost ends with a terminal event of its own (no id).
    assert [e.data for e in seen[:10]] == [str(i) for i in range(10)]
    assert events[-1].id is None
    assert events[-1].status == "interrupted"
    # The stream itself ends interrupted right after what the store still has, saying why.
    assert [e.data for e in replay.events[:-1]] == [str(i) for i in range(5)]
    assert replay.terminal is not None
    assert replay.terminal.position == 6
    assert replay.terminal.json() == {
        "status": "interrupted",
        "message": "the store lost events it had taken (a failover?)",
    }
