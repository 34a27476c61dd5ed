"""The Redis Cluster harness (``_support/redis_cluster.py``) proven with redis-py alone, not the library:
keys land on all three masters, sharded Pub/Sub delivers, a Lua script runs on two keys of one hash tag,
and a killed master's replica takes over with the acknowledged writes.

Run with ``-s`` to see how long the session cluster took to start and how long a failover took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from _support.redis_cluster import RedisCluster
from redis.exceptions import RedisClusterException, ResponseError

pytestmark = pytest.mark.redis

TIMEOUT = 10.0


@pytest.fixture
async def cluster_client(redis_cluster: RedisCluster) -> AsyncIterator[aioredis.RedisCluster]:
    client = aioredis.RedisCluster.from_url(redis_cluster.url)
    try:
        yield client
    finally:
        await client.aclose()


def keys_on_each_master(cluster: RedisCluster, client: aioredis.RedisCluster, prefix: str) -> dict[int, str]:
    """One key per master (port -> key), found by the key's slot."""
    ranges = cluster.slot_ranges()
    found: dict[int, str] = {}
    for i in range(1000):
        key = f"{prefix}:{i}"
        slot = client.keyslot(key)
        owner = next(port for start, end, port in ranges if start <= slot <= end)
        found.setdefault(owner, key)
        if len(found) == len(ranges):
            break
    return found


def test_session_cluster_is_three_masters_with_a_replica_each(redis_cluster):
    print(f"[redis cluster] session cluster started in {redis_cluster.started_in:.2f} s")  # noqa: T201
    masters = redis_cluster.masters()
    assert len(masters) == 3
    assert len(redis_cluster.replicas()) == 3
    assert len(redis_cluster.urls) == 6
    for master in masters:
        assert len(redis_cluster.replicas_of(master)) == 1
    assert redis_cluster.url in [f"redis://127.0.0.1:{port}" for port in masters]
    assert {port for _, _, port in redis_cluster.slot_ranges()} == set(masters)


async def test_keys_land_on_all_three_masters(redis_cluster, cluster_client, key_prefix):
    keys = keys_on_each_master(redis_cluster, cluster_client, key_prefix)
    assert set(keys) == set(redis_cluster.masters())
    async with asyncio.timeout(TIMEOUT):
        for port, key in keys.items():
            assert redis_cluster.master_of_key(key) == port  # CLUSTER KEYSLOT agrees with redis-py
            assert await cluster_client.set(key, f"on {port}")
        for port, key in keys.items():
            assert await cluster_client.get(key) == f"on {port}".encode()
            # The key really lives on that master: a plain client there reads it without a MOVED.
            direct = aioredis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
            try:
                assert await direct.get(key) == f"on {port}".encode()
            finally:
                await direct.aclose()
        assert await cluster_client.delete(*keys.values()) == 3


async def test_sharded_pubsub_delivers_on_every_shard(redis_cluster, cluster_client, key_prefix):
    channels = list(keys_on_each_master(redis_cluster, cluster_client, f"{key_prefix}:chan").values())
    pubsub = cluster_client.pubsub()
    try:
        async with asyncio.timeout(TIMEOUT):
            # ClusterPubSub.ssubscribe looks the channel's node up in the client's slot map without
            # loading it: on a client that has sent no command yet it raises SlotNotCoveredError.
            await cluster_client.initialize()
            await pubsub.ssubscribe(*channels)
            # Wait for each confirmation, so no SPUBLISH can overtake its SSUBSCRIBE.
            confirmed: set[bytes] = set()
            while len(confirmed) < len(channels):
                message = await pubsub.get_sharded_message(timeout=0.5)
                if message is not None and message["type"] == "ssubscribe":
                    confirmed.add(message["channel"])
            assert confirmed == {channel.encode() for channel in channels}

            for channel in channels:
                assert await cluster_client.spublish(channel, f"hello {channel}") == 1
            received: dict[bytes, bytes] = {}
            while len(received) < len(channels):
                message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=0.5)
                if message is not None:
                    assert message["type"] == "smessage"
                    received[message["channel"]] = message["data"]
            assert received == {channel.encode(): f"hello {channel}".encode() for channel in channels}
            await pubsub.sunsubscribe()
    finally:
        await pubsub.aclose()


LUA_MOVE = """
local value = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[2], value .. ARGV[1])
redis.call('DEL', KEYS[1])
return redis.call('GET', KEYS[2])
"""


async def test_lua_script_on_two_keys_of_one_hash_tag(redis_cluster, cluster_client, key_prefix):
    source, target = f"{{t}}:{key_prefix}:a", f"{{t}}:{key_prefix}:b"
    assert redis_cluster.keyslot(source) == redis_cluster.keyslot(target) == cluster_client.keyslot("t")
    async with asyncio.timeout(TIMEOUT):
        await cluster_client.set(source, "moved")
        assert await cluster_client.eval(LUA_MOVE, 2, source, target, "!") == b"moved!"
        assert await cluster_client.exists(source) == 0
        assert await cluster_client.get(target) == b"moved!"
        script = cluster_client.register_script(LUA_MOVE)  # EVALSHA, loaded on the key's master
        assert await script(keys=[target, source], args=["?"]) == b"moved!?"
        # Keys of different slots are refused (by redis-py before sending, or by Redis with CROSSSLOT).
        with pytest.raises((RedisClusterException, ResponseError)):
            await cluster_client.eval(LUA_MOVE, 2, f"{key_prefix}:x", f"{key_prefix}:y", "!")
        await cluster_client.delete(source, target)


async def test_killed_master_fails_over_with_acknowledged_writes(failover_cluster, key_prefix):
    cluster = failover_cluster
    key = f"{key_prefix}:kept"
    master = cluster.master_of_key(key)
    (replica,) = cluster.replicas_of(master)

    # WAIT counts the replicas that acknowledged this connection's writes, so SET and WAIT share one
    # connection to the master (RedisCluster.wait would ask every node, on connections that wrote nothing).
    direct = aioredis.Redis(host="127.0.0.1", port=master, socket_timeout=5, single_connection_client=True)
    try:
        async with asyncio.timeout(TIMEOUT):
            await direct.set(key, "before")
            assert await direct.execute_command("WAIT", 1, 1000) == 1
    finally:
        await direct.aclose()

    client = aioredis.RedisCluster.from_url(cluster.url)
    try:
        async with asyncio.timeout(TIMEOUT):
            assert await client.get(key) == b"before"

        killed_at = time.monotonic()
        cluster.kill(master)
        new_master = await asyncio.wait_for(asyncio.to_thread(cluster.wait_failover, master, 20.0), 25)
        failover_took = time.monotonic() - killed_at
        assert new_master == replica
        assert master not in cluster.masters()

        # The client still points at the killed master; it finds the new one by itself.
        async with asyncio.timeout(TIMEOUT):
            assert await client.get(key) == b"before"
            assert await client.set(key, "after")
            assert await client.get(key) == b"after"
        readable_took = time.monotonic() - killed_at
        print(  # noqa: T201
            f"[redis cluster] failover: replica promoted {failover_took:.2f} s after the kill, "
            f"key readable through the client {readable_took:.2f} s after it "
            f"(cluster-node-timeout {cluster.node_timeout_ms} ms; fresh cluster started in "
            f"{cluster.started_in:.2f} s)"
        )

        # The old master comes back empty, as the new master's replica, and the cluster is whole again.
        await asyncio.wait_for(asyncio.to_thread(cluster.restart, master), 35)
        assert cluster.replicas_of(new_master) == [master]
        async with asyncio.timeout(TIMEOUT):
            assert await client.get(key) == b"after"
    finally:
        await client.aclose()
