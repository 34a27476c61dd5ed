"""The scenarios on a Redis Cluster of the benchmark's own: ``cluster`` and ``rehearsal``.

Each starts a local cluster of six ``redis-server`` processes (three masters, one replica each; the tests'
harness, ``tests/_support/redis_cluster.py``) on free ports, runs Redis-store server processes that are
seeded with different nodes of it (``RedisStreamStore.from_url(url, cluster=True)``), and kills it at the
end: nothing is written to the shared Redis.

- ``cluster``: 500 paced streams on one process (the per-process goal, on a cluster), 500 on each of two
  processes, fan-out to 500 viewers on two processes (round trips per chunk, and where each comes from),
  and what ``replicas=1`` (``WAIT 1``) costs: tee throughput and paced p99, replicas=0 vs 1.
- ``rehearsal``: the largest scale this machine holds, 10,000 concurrent streams across two processes at
  a rate the machine can carry: delivered vs offered, p99, Redis memory (INFO memory of each master, and
  MEMORY USAGE of sampled keys), operations and CPU of each shard (INFO commandstats, INFO cpu,
  instantaneous_ops_per_sec), and each process's connections to each node (CLIENT LIST).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from benchmarks.harness import ROOT, Server
from benchmarks.scenarios import (
    ITEM_PAD,
    Context,
    Load,
    fanout_run,
    paced_point,
    quiesce,
    tee_once,
)

HOST = "127.0.0.1"
IDLE_SECONDS = 2.0


def cluster_class() -> Any:
    """The tests' cluster harness (tests/ on sys.path: the tests are not an installed package)."""
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from _support.redis_cluster import RedisCluster  # noqa: PLC0415

    return RedisCluster


@contextlib.asynccontextmanager
async def local_cluster(ctx: Context) -> AsyncIterator[Any]:
    """A 3-master, 3-replica cluster in a temporary folder, killed and removed at the end."""
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as root:
        cluster = cluster_class()(Path(root))
        await asyncio.to_thread(cluster.start)
        ctx.log(
            f"  cluster: masters {cluster.masters()}, replicas {cluster.replicas()} "
            f"(up in {cluster.started_in:.1f} s)"
        )
        try:
            yield cluster
        finally:
            await asyncio.to_thread(cluster.stop)


class ClusterProbe:
    """What the cluster's nodes say about themselves: CPU, command counts, memory, clients."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.ports: list[int] = list(cluster.ports)
        self.masters: list[int] = cluster.masters()
        self.clients = {port: Redis(host=HOST, port=port) for port in self.ports}

    async def close(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    async def cpu_seconds(self) -> float:
        """CPU of every node, masters and replicas: what the cluster as a whole spends."""
        infos = await asyncio.gather(*(client.info("cpu") for client in self.clients.values()))
        return sum(float(info["used_cpu_user"]) + float(info["used_cpu_sys"]) for info in infos)

    async def commandstats(self) -> dict[str, int]:
        """Commands the masters ran (their replicas run the same writes again), summed."""
        total: dict[str, int] = {}
        for port in self.masters:
            stats = await self.clients[port].info("commandstats")
            for name, value in stats.items():
                key = name.removeprefix("cmdstat_")
                total[key] = total.get(key, 0) + int(value["calls"])
        return total

    async def node_stats(self) -> dict[int, dict[str, Any]]:
        """Each node: role, CPU seconds, memory, commands so far (by name), ops/s now, clients."""
        out: dict[int, dict[str, Any]] = {}
        for port, client in self.clients.items():
            info = await client.info("all")
            out[port] = {
                "role": "master" if port in self.masters else "replica",
                "cpu_s": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
                "used_memory": int(info["used_memory"]),
                "used_memory_dataset": int(info.get("used_memory_dataset", 0)),
                "keys": sum(
                    int(v["keys"]) for k, v in info.items() if k.startswith("db") and isinstance(v, dict)
                ),
                "total_commands_processed": int(info["total_commands_processed"]),
                "instantaneous_ops_per_sec": int(info["instantaneous_ops_per_sec"]),
                "connected_clients": int(info["connected_clients"]),
                "pubsubshard_channels": int(info.get("pubsubshard_channels", 0)),
                "commands": {
                    k.removeprefix("cmdstat_"): int(v["calls"])
                    for k, v in info.items()
                    if k.startswith("cmdstat_") and k not in ("cmdstat_info", "cmdstat_client|list")
                },
            }
        return out

    async def clients_by_node(self, servers: Sequence[Server]) -> dict[str, dict[int, int]]:
        """How many connections each server process has open to each node (CLIENT LIST, matched by port)."""
        owned = {s.name: await asyncio.to_thread(s.local_ports_by_remote, set(self.ports)) for s in servers}
        counts = {s.name: dict.fromkeys(self.ports, 0) for s in servers}
        for port, client in self.clients.items():
            for entry in await client.client_list():
                local = int(str(entry["addr"]).rsplit(":", 1)[1])
                for name, by_node in owned.items():
                    if local in by_node[port]:
                        counts[name][port] += 1
        return counts

    async def clients_of(self, servers: Sequence[Server]) -> dict[str, int]:
        """How many connections each server process has open to the cluster, all nodes together."""
        return {name: sum(nodes.values()) for name, nodes in (await self.clients_by_node(servers)).items()}

    async def sample_keys(self, suffix: str, count: int) -> list[tuple[int, bytes]]:
        """Up to ``count`` keys ending with ``suffix`` from each master, with the master's port."""
        found = []
        for port in self.masters:
            taken = 0
            async for key in self.clients[port].scan_iter(match=f"*{suffix}", count=1000):
                found.append((port, key))
                taken += 1
                if taken >= count:
                    break
        return found

    async def memory_usage(self, keys: Sequence[tuple[int, bytes]]) -> list[int]:
        return [int(await self.clients[port].memory_usage(key, samples=0) or 0) for port, key in keys]


def cluster_server(ctx: Context, name: str, url: str, scenario: str, *, replicas: int = 0) -> Server:
    env = {
        "BENCH_STORE": "redis",
        "BENCH_REDIS_URL": url,
        "BENCH_REDIS_CLUSTER": "1",
        "BENCH_REPLICAS": str(replicas),
        "BENCH_KEY_PREFIX": ctx.prefix(scenario),
    }
    return Server(name, env=env, config=ctx.server_config)


def _delta(after: dict[int, dict[str, Any]], before: dict[int, dict[str, Any]], key: str) -> dict[int, Any]:
    return {port: after[port][key] - before[port][key] for port in after}


def _log_point(ctx: Context, label: str, point: dict[str, Any]) -> None:
    ctx.log(
        f"  {label}: {point['delivered_per_s']:,.0f}/s of {point['offered_per_s']:,.0f}, "
        f"p50 {point['p50_ms']} ms p99 {point['p99_ms']} ms, servers {point['server_cpu_pct_by_process']}, "
        f"Redis {point['redis_cpu_pct']}%, client {point['client_cpu_pct']}%"
    )


# -- cluster --


async def cluster(ctx: Context) -> dict[str, Any]:
    """500 paced streams per process, fan-out to 500 viewers, and the cost of replicas=1, on a cluster."""
    p = ctx.params
    out: dict[str, Any] = {"masters": 3, "replicas_per_master": 1}
    async with local_cluster(ctx) as local:
        urls = local.urls
        a = cluster_server(ctx, "cluster-a", urls[0], "cluster")
        b = cluster_server(ctx, "cluster-b", urls[3], "cluster")
        w = cluster_server(ctx, "cluster-wait1", urls[1], "cluster", replicas=1)
        probe = ClusterProbe(local)
        try:
            with ctx.servers([a, b, w]):
                out["seeds"] = {a.name: urls[0], b.name: urls[3], w.name: urls[1]}
                out["paced"] = await _cluster_paced(ctx, probe, a, b, w)
                await quiesce([a, b, w])
                row = await fanout_run(ctx, [a, a, b], "redis-cluster", p.cluster_fan_viewers, probe=probe)
                ctx.log(
                    f"  fan-out {row['viewers']} viewers: {row.get('chunk_round_trips_per_chunk')} round "
                    f"trips/chunk (mid-stream), p99 {row['p99_ms']} ms"
                )
                out["fanout"] = row
                await quiesce([a, b, w])
                out["tee"] = await _cluster_tee(ctx, a, w)
                out["connections"] = await probe.clients_by_node([a, b, w])
        finally:
            await probe.close()
    return out


async def _cluster_paced(
    ctx: Context, probe: ClusterProbe, a: Server, b: Server, w: Server
) -> dict[str, Any]:
    p = ctx.params
    count = p.cluster_streams
    load = Load(count, p.conc_rate, p.conc_ramp, p.conc_settle, p.conc_window)
    points = {}
    for label, targets, streams in (
        ("one process, replicas=0", [(a, "/tee")], count),
        ("one process, replicas=1", [(w, "/tee")], count),
        ("two processes, replicas=0", [(a, "/tee"), (b, "/tee")], 2 * count),
    ):
        await quiesce([a, b, w])
        variant = "redis-cluster-replicas-1" if "replicas=1" in label else "redis-cluster"
        load.count = streams
        point = await paced_point(variant, targets, load, probe=probe, redis=True)
        point["label"] = label
        points[label] = point
        _log_point(ctx, f"{streams} streams, {label}", point)
    return points


async def _cluster_tee(ctx: Context, a: Server, w: Server) -> dict[str, Any]:
    p = ctx.params
    runs: dict[str, list[dict[str, Any]]] = {"replicas=0": [], "replicas=1": []}
    targets = {"replicas=0": a, "replicas=1": w}
    for name, server in targets.items():
        await tee_once(server, "/tee", 2000, f"warm-{name}")
    for repeat in range(p.cluster_tee_repeats):
        for name, server in targets.items():
            runs[name].append(await tee_once(server, "/tee", p.cluster_tee_chunks, f"{name}-{repeat}"))
            ctx.log(f"  cluster tee {name} #{repeat + 1}: {runs[name][-1]['events_per_s']:,} events/s")
    return {
        "chunks": p.cluster_tee_chunks,
        "repeats": p.cluster_tee_repeats,
        "variants": {
            name: {
                "events_per_s": round(statistics.median(r["events_per_s"] for r in items)),
                "server_cpu_us_per_event": statistics.median(r["server_cpu_us_per_event"] for r in items),
                "runs": items,
            }
            for name, items in runs.items()
        },
    }


# -- rehearsal --


async def rehearsal(ctx: Context) -> dict[str, Any]:
    """The largest scale this machine holds: many concurrent streams on two processes and the cluster."""
    p = ctx.params
    load = Load(
        p.rehearsal_streams, p.rehearsal_rate, p.rehearsal_ramp, p.rehearsal_settle, p.rehearsal_window
    )
    async with local_cluster(ctx) as local:
        urls = local.urls
        a = cluster_server(ctx, "rehearsal-a", urls[0], "rehearsal")
        b = cluster_server(ctx, "rehearsal-b", urls[3], "rehearsal")
        probe = ClusterProbe(local)
        try:
            with ctx.servers([a, b]):
                idle = await probe.node_stats()  # the baseline: CPU and memory of the idle cluster
                idle_from = time.time()
                await asyncio.sleep(IDLE_SECONDS)
                idle_to, idle_end = time.time(), await probe.node_stats()
                idle_cpu = {
                    port: (idle_end[port]["cpu_s"] - idle[port]["cpu_s"]) / (idle_to - idle_from)
                    for port in idle
                }
                marks: dict[str, Any] = {}

                async def during(window: tuple[float, float]) -> dict[str, Any]:
                    await asyncio.sleep(max(0.0, window[0] - time.time()))
                    marks["start"] = (time.time(), await probe.node_stats())
                    await asyncio.sleep(max(0.0, (window[0] + window[1]) / 2 - time.time()))
                    marks["connections"] = await probe.clients_by_node([a, b])
                    await asyncio.sleep(max(0.0, window[1] - time.time()))
                    marks["end"] = (time.time(), await probe.node_stats())
                    return {}

                point = await paced_point(
                    "redis-cluster",
                    [(a, "/tee"), (b, "/tee")],
                    load,
                    probe=probe,
                    redis=True,
                    processes=2,
                    connections_every=5.0,
                    during=during,
                )
                _log_point(ctx, f"rehearsal, {load.count} streams at {load.rate}/s", point)
                point.pop("during", None)
                out = {"load": load.__dict__, "chunks_per_stream": load.chunks, "point": point}
                out["shards"] = _shards(idle, idle_cpu, marks, point)
                out["connections"] = marks.get("connections", {})
                out["memory"] = await _rehearsal_memory(probe, idle, marks, load)
                ctx.log(f"  rehearsal memory: {out['memory']['summary']}")
        finally:
            await probe.close()
    return out


def _shards(
    idle: dict[int, dict[str, Any]], idle_cpu: dict[int, float], marks: dict[str, Any], point: dict[str, Any]
) -> dict[str, Any]:
    """Operations, CPU and memory of each master over the window. Per chunk means per chunk stored: the
    XADDs the scripts ran (no stream starts or ends in the window, so no terminal event is among them);
    CPU per chunk is the CPU above what each node spends idle (its cron and the cluster bus: per node,
    not per chunk)."""
    (t0, start), (t1, end) = marks["start"], marks["end"]
    seconds = t1 - t0
    shards = {}
    for port in start:
        if start[port]["role"] != "master":
            continue
        commands = {k: v - start[port]["commands"].get(k, 0) for k, v in end[port]["commands"].items()}
        commands = {k: v for k, v in sorted(commands.items()) if v > 0}
        cpu = end[port]["cpu_s"] - start[port]["cpu_s"]
        evalsha = commands.get("evalsha", 0)
        processed = end[port]["total_commands_processed"] - start[port]["total_commands_processed"]
        shards[str(port)] = {
            "commands_per_s": round(sum(commands.values()) / seconds, 1),
            "evalsha_per_s": round(evalsha / seconds, 1),
            "commands_processed_per_s": round(processed / seconds, 1),
            "instantaneous_ops_per_sec": end[port]["instantaneous_ops_per_sec"],
            "cpu_pct": round(100.0 * cpu / seconds, 1),
            "cpu_us_per_evalsha": round(1e6 * cpu / evalsha, 1) if evalsha else None,
            "commands": commands,
            "used_memory_mib": round(end[port]["used_memory"] / 2**20, 1),
            "used_memory_growth_mib": round(
                (end[port]["used_memory"] - idle[port]["used_memory"]) / 2**20, 1
            ),
            "keys": end[port]["keys"],
            "pubsubshard_channels": end[port]["pubsubshard_channels"],
        }
    used = {port: end[port]["cpu_s"] - start[port]["cpu_s"] for port in start}
    above_idle = {port: used[port] - idle_cpu[port] * seconds for port in start}
    masters = [port for port in start if start[port]["role"] == "master"]
    replicas = [port for port in start if start[port]["role"] == "replica"]
    masters_cpu, replicas_cpu = sum(used[p] for p in masters), sum(used[p] for p in replicas)
    masters_above, replicas_above = sum(above_idle[p] for p in masters), sum(above_idle[p] for p in replicas)
    stored = sum(s["commands"].get("xadd", 0) for s in shards.values()) / seconds
    return {
        "window_s": round(seconds, 2),
        "chunks_stored_per_s": round(stored, 1),
        "chunks_delivered_per_s": point["delivered_per_s"],
        "by_master": shards,
        "masters_cpu_pct": round(100.0 * masters_cpu / seconds, 1),
        "replicas_cpu_pct": round(100.0 * replicas_cpu / seconds, 1),
        "idle_cpu_pct_per_node": {str(port): round(100.0 * cpu, 2) for port, cpu in idle_cpu.items()},
        "masters_cpu_us_per_chunk": _per(masters_above, seconds, stored),
        "replicas_cpu_us_per_chunk": _per(replicas_above, seconds, stored),
        "masters_cpu_us_per_chunk_with_idle": _per(masters_cpu, seconds, stored),
        "evalsha_per_chunk": round(sum(s["evalsha_per_s"] for s in shards.values()) / stored, 3)
        if stored
        else None,
        "commands_per_chunk": round(sum(s["commands_per_s"] for s in shards.values()) / stored, 3)
        if stored
        else None,
    }


def _per(cpu_s: float, seconds: float, per_s: float) -> float | None:
    """Microseconds of CPU per chunk: ``cpu_s`` over ``seconds`` at ``per_s`` chunks a second."""
    return round(1e6 * cpu_s / seconds / per_s, 2) if per_s else None


async def _rehearsal_memory(
    probe: ClusterProbe, idle: dict[int, dict[str, Any]], marks: dict[str, Any], load: Load
) -> dict[str, Any]:
    """Redis memory the live streams took: INFO memory growth of the masters, and sampled keys."""
    _, end = marks["end"]
    growth = sum(end[port]["used_memory"] - idle[port]["used_memory"] for port in probe.masters)
    chunks_at_end = round(load.rate * (load.ramp / 2 + load.settle + load.window))  # a stream's mean
    events = await probe.memory_usage(await probe.sample_keys(":events", 20))
    meta = await probe.memory_usage(await probe.sample_keys(":meta", 20))
    per_stream = growth / load.count
    return {
        "masters_used_memory_growth_bytes": growth,
        "bytes_per_live_stream": round(per_stream),
        "chunks_per_stream_at_window_end": chunks_at_end,
        "sampled_events_key_bytes": round(statistics.mean(events)) if events else None,
        "sampled_meta_key_bytes": round(statistics.mean(meta)) if meta else None,
        "summary": (
            f"{growth / 2**20:.1f} MiB on the masters for {load.count:,} live streams of about "
            f"{chunks_at_end} chunks: {per_stream:,.0f} B per stream"
        ),
        "item_bytes": len(f"12345 {time.time():.6f} {'x' * ITEM_PAD}"),
    }
