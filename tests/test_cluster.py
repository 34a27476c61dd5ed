"""On a real Redis Cluster (3 masters, 3 replicas, started by the tests): app processes seeded with
different nodes share streams, and a master killed mid-stream loses nothing a reader saw twice; the store
queues many concurrent calls into its pipelines; a sync writer (as a Celery task runs it) writes and hears
a cancel through another node.

The store contract runs on the cluster too (test_store_contract.py), and so does the key stress test
(test_key_stress.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from _support.asgi import within
from _support.figures import record
from _support.reading import check_stream, follow_to_end, numbers, open_sse
from _support.redis_cluster import RedisCluster
from _support.servers import Server
from _support.stores import delete_cluster_prefix

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def cluster_env(cluster: RedisCluster, prefix: str, index: int, **settings: str) -> dict[str, str]:
    """An app process's settings: the cluster through one of its nodes (a different one per process)."""
    urls = cluster.urls
    return {
        "E2E_REDIS_URL": urls[(index * 3) % len(urls)],
        "E2E_REDIS_CLUSTER": "1",
        "E2E_KEY_PREFIX": prefix,
        **settings,
    }


@pytest.fixture
def on_cluster(
    redis_cluster: RedisCluster, launch: Callable[..., list[Server]], key_prefix: str
) -> Iterator[Callable[..., list[Server]]]:
    yield lambda *settings: launch(
        *(cluster_env(redis_cluster, key_prefix, i, **s) for i, s in enumerate(settings))
    )
    delete_cluster_prefix(redis_cluster, key_prefix)


async def test_processes_seeded_with_different_nodes_share_streams_and_cancel_anywhere(on_cluster):
    a, b = on_cluster({}, {})
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        path = "/count?n=40&interval=0.02"
        async with open_sse(client, a.url + path) as on_a:
            stream_id = on_a.stream_id
            head = await within(on_a.take(5))
        async with open_sse(client, b.url + path, last_event_id=head[-1].id) as on_b:
            tail = await within(on_b.rest())
        check_stream(head + tail, stream_id, numbers(40))

        async with open_sse(client, f"{a.url}/hold?n=3") as producing:
            held_id = producing.stream_id
            assert [e.data for e in await within(producing.take(3))] == numbers(3)
            async with open_sse(client, f"{b.url}/resumable/streams/{held_id}") as following:
                assert [e.data for e in await within(following.take(3))] == numbers(3)
                cancelled = await within(client.delete(f"{b.url}/resumable/streams/{held_id}"))
                assert cancelled.json()["status"] == "cancelled"
                for reader in (following, producing):
                    assert [(e.position, e.status) for e in await within(reader.rest())] == [(4, "cancelled")]


async def test_a_killed_producer_ends_interrupted_on_the_cluster(on_cluster):
    a, b = on_cluster({"E2E_LEASE": "1"}, {"E2E_LEASE": "1"})
    async with httpx.AsyncClient(timeout=TIMEOUT) as client, open_sse(client, f"{a.url}/hold?n=3") as on_a:
        stream_id = on_a.stream_id
        await within(on_a.take(3))
        async with open_sse(client, f"{b.url}/resumable/streams/{stream_id}") as on_b:
            replayed = await within(on_b.take(3))
            a.kill()
            rest = await within(on_b.rest(), 15)
    check_stream(replayed + rest, stream_id, numbers(3), status="interrupted")


def contiguous(events: list, stream_id: str) -> None:
    """Events with ids are this stream's positions 1, 2, 3, ... with no gap and no duplicate."""
    with_ids = [e for e in events if e.id is not None]
    assert {e.stream_id for e in with_ids} <= {stream_id}
    assert [e.position for e in with_ids] == list(range(1, len(with_ids) + 1))
    data = [e.data for e in with_ids if not e.is_terminal]
    assert data == numbers(len(data))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("replicas", [0, 1])
async def test_a_master_killed_mid_stream_loses_nothing_readers_saw(
    failover_cluster: RedisCluster, launch: Callable[..., list[Server]], replicas: int
):
    n, interval = 300, 0.02
    # Readers wait out the failover without a byte (store calls are retried for up to 15 s).
    timeout = httpx.Timeout(30.0, connect=5.0)
    settings = {"E2E_REPLICAS": str(replicas), "E2E_STORE_RETRY_FOR": "15", "E2E_LEASE": "10"}
    a, b = launch(*(cluster_env(failover_cluster, "failover", i, **settings) for i in range(2)))
    async with httpx.AsyncClient(timeout=timeout) as client:
        async with open_sse(client, f"{a.url}/count?n={n}&interval={interval}") as on_a:
            stream_id = on_a.stream_id
            async with open_sse(client, f"{b.url}/resumable/streams/{stream_id}") as on_b:
                await within(asyncio.gather(on_a.take(20), on_b.take(20)))
                master = failover_cluster.master_of_key(f"failover:{{{stream_id[:4]}}}:{stream_id}:meta")
                failover_cluster.kill(master)
                killed = time.monotonic()
                await asyncio.to_thread(failover_cluster.wait_failover, master, 30)
                promoted_s = time.monotonic() - killed
                # The killed node comes back, as its successor's replica: until then, a shard has no
                # replica, and with replicas=1 no write to it counts as done.
                await asyncio.to_thread(failover_cluster.restart, master)
                restored_s = time.monotonic() - killed
                await within(asyncio.gather(on_a.rest(), on_b.rest()), 60)
        # Whatever each reader got, and then a resume from where it stopped: one stream, no duplicate.
        finals = []
        for reader in (on_a, on_b):
            contiguous(reader.events, stream_id)
            last = next(e.id for e in reversed(reader.events) if e.id is not None)
            if reader.events[-1].id is not None and reader.events[-1].is_terminal:
                finals.append((reader.events[-1].status, len(reader.events) - 1))
                continue
            rest = await within(
                follow_to_end(client, f"{a.url}/resumable/streams/{stream_id}", last_event_id=last), 30
            )
            whole = [e for e in reader.events if e.id is not None] + rest.events
            contiguous(whole, stream_id)
            finals.append((whole[-1].status, len(whole) - 1))
        replay = await within(follow_to_end(client, f"{b.url}/resumable/streams/{stream_id}"), 30)
    contiguous(replay.events, stream_id)
    statuses = {status for status, _ in finals} | {replay.events[-1].status}
    assert statuses <= {"done", "interrupted"}
    if replicas:
        # Every event the producer stored was on a replica before it counted: the failover lost none.
        check_stream(replay.events, stream_id, numbers(n))
    record(
        f"cluster_failover_replicas_{replicas}",
        kill_to_promotion_s=round(promoted_s, 2),
        kill_to_replica_back_s=round(restored_s, 2),
        reader_endings=[f"{status} after {count} events" for status, count in finals],
        replay=f"{replay.events[-1].status} after {len(replay.events) - 1} events",
    )


async def test_many_concurrent_calls_wait_for_connections_instead_of_failing(redis_cluster, key_prefix):
    # Regression: every info(), key_holder() and position read took a cluster connection of its own, and
    # past the client's max_connections per node redis-py raised MaxConnectionsError, which the store
    # reported as Redis out of reach (followers fell back to polling, or ended). Now they share the store's
    # pipelines: 1,500 calls at once on a client allowed 1 connection per node all answer.
    from litestar_resumable import RedisStreamStore  # noqa: PLC0415
    from litestar_resumable._ids import new_stream_id  # noqa: PLC0415

    store = RedisStreamStore.from_url(
        redis_cluster.url, cluster=True, key_prefix=key_prefix, max_connections=2
    )
    try:
        keys = [f"chat-{i}" for i in range(500)]
        ids = [new_stream_id(key) for key in keys]
        await within(
            asyncio.gather(
                *(store.create(s, route="r", lease=30, ttl=60, key=k) for k, s in zip(keys, ids, strict=True))
            )
        )
        infos, holders, positions = await within(
            asyncio.gather(
                asyncio.gather(*(store.info(s) for s in ids)),
                asyncio.gather(*(store.key_holder(key) for key in keys)),
                asyncio.gather(*(store.last_position(s) for s in ids)),
            )
        )
        assert [info.stream_id for info in infos if info is not None] == ids
        assert holders == ids
        assert positions == [0] * 500
        # They went in the store's shared pipelines, not a connection and a round trip each.
        calls = store._calls.calls
        assert (calls["hmget"], calls["get"], calls["hget"]) == (500, 500, 500)
        assert store._calls.pipelines < 1500
    finally:
        await store.close()
        delete_cluster_prefix(redis_cluster, key_prefix)


async def test_the_sync_writer_writes_and_hears_a_cancel_on_the_cluster(redis_cluster, key_prefix):
    # SyncStreamWriter.from_url(..., cluster=True) in a thread (as a Celery task runs), seeded with another
    # node than the web side's store: it claims the opened stream, its writes reach a follower through the
    # cluster, and a cancel from the web side reaches it (sharded Pub/Sub on the stream's shard).
    import threading  # noqa: PLC0415

    from litestar_resumable import RedisStreamStore, ResumablePlugin, SyncStreamWriter  # noqa: PLC0415

    store = RedisStreamStore.from_url(redis_cluster.urls[0], cluster=True, key_prefix=key_prefix)
    plugin = ResumablePlugin(store)
    wrote_three = threading.Event()
    outcome: dict[str, object] = {}
    try:
        stream_id = await within(plugin.open_stream(key="chat-7"))

        def job() -> None:
            url = redis_cluster.urls[4]  # another node than the web side's
            with SyncStreamWriter.from_url(url, stream_id, key_prefix=key_prefix, cluster=True) as writer:
                for i in range(3):
                    writer.write(f"token {i}")
                wrote_three.set()
                outcome["heard_cancel"] = writer.wait_cancelled(timeout=10)
                outcome["cancelled"] = writer.cancelled

        thread = threading.Thread(target=job, name="sync-writer-job")
        thread.start()
        assert await within(asyncio.to_thread(wrote_three.wait, 10))

        async def stored() -> list[str]:  # the writer's flusher stores the batch on its own thread
            async with store.watch(stream_id) as watch:  # woken by the writes' sharded notifications
                while len(events := await store.read_after(stream_id, 0, limit=10)) < 3:
                    await watch.wait(len(events), 1.0)
            return [event.data for event in events]

        assert await within(stored()) == ["token 0", "token 1", "token 2"]
        assert (await within(plugin.cancel(stream_id))).status == "cancelled"
        await within(asyncio.to_thread(thread.join, 10))
        assert not thread.is_alive()
        assert outcome == {"heard_cancel": True, "cancelled": True}
        info = await within(store.info(stream_id))
        assert info is not None
        assert info.status == "cancelled"
        assert info.last_position == 4  # three tokens and the terminal event, nothing after the cancel
    finally:
        await store.close()
        delete_cluster_prefix(redis_cluster, key_prefix)
