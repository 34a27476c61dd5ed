"""The scenarios: each starts the servers it needs, drives them from load generator processes, and returns
what it measured as JSON-able data (see README.md in this folder for what each one measures).

Variants, in every scenario where they apply:

- ``plain``: Litestar's own ``ServerSentEvent`` over the generator (no ids, no store): the baseline;
- ``memory``: ``@resumable`` with the default ``MemoryStreamStore``;
- ``redis``: ``@resumable`` with ``RedisStreamStore`` (one uvicorn process, or two where processes matter);
- ``peer``: Vercel's ``resumable-stream`` on Node with the ``redis`` client, on the same Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks.harness import (
    PEER_DIR,
    REDIS_SERVER,
    BenchmarkError,
    CommandCounter,
    CpuWindow,
    RedisProbe,
    Server,
    ServerConfig,
    http_request,
    percentile,
    run_clients,
    running,
    stream,
    stream_problems,
)

VARIANTS = {
    "plain": "plain SSE (Litestar)",
    "memory": "resumable, memory store",
    "redis": "resumable, Redis store",
    "peer": "resumable-stream (Node)",
    "redis-cluster": "resumable, Redis Cluster store",
    "redis-cluster-replicas-1": "resumable, Redis Cluster store, replicas=1",
}
HOLD = 120.0  # seconds a "held" stream stays open at most; the scenario ends it at once when done with it
ITEM_PAD = 16


@dataclass
class Params:
    """The sizes of one mode of the suite."""

    tee_chunks: int
    tee_repeats: int
    conc_counts: list[int]
    conc_rate: float
    conc_window: float
    conc_ramp: float
    conc_settle: float
    cost_fast_chunks: int
    cost_paced_chunks: int
    cost_paced_rate: float
    cost_memory_streams: int
    cost_followers: int
    cost_followers_seconds: float
    resume_backlogs: list[int]
    resume_repeats: int
    fan_viewers: list[int]
    fan_chunks: int
    fan_rate: float
    large_items: int = 200
    large_size: int = 1024 * 1024
    cluster_streams: int = 500
    cluster_fan_viewers: int = 500
    cluster_tee_chunks: int = 20_000
    cluster_tee_repeats: int = 3
    rehearsal_streams: int = 10_000
    rehearsal_rate: float = 0.5
    rehearsal_ramp: float = 40.0
    rehearsal_settle: float = 3.0
    rehearsal_window: float = 8.0
    observe_streams: int = 500
    observe_repeats: int = 4


QUICK = Params(
    tee_chunks=50_000,
    tee_repeats=5,
    conc_counts=[100, 250, 500, 1000],
    conc_rate=20.0,
    conc_window=3.0,
    conc_ramp=1.0,
    conc_settle=0.5,
    cost_fast_chunks=20_000,
    cost_paced_chunks=100,
    cost_paced_rate=50.0,
    cost_memory_streams=5,
    cost_followers=1000,
    cost_followers_seconds=3.0,
    resume_backlogs=[1_000, 10_000, 100_000],
    resume_repeats=1,
    fan_viewers=[1, 10, 100, 500],
    fan_chunks=40,
    fan_rate=20.0,
)

FULL = Params(
    tee_chunks=100_000,
    tee_repeats=7,
    conc_counts=[100, 250, 500, 750, 1000, 1500],
    conc_rate=20.0,
    conc_window=10.0,
    conc_ramp=2.0,
    conc_settle=1.0,
    cost_fast_chunks=100_000,
    cost_paced_chunks=500,
    cost_paced_rate=50.0,
    cost_memory_streams=20,
    cost_followers=1000,
    cost_followers_seconds=10.0,
    resume_backlogs=[1_000, 10_000, 100_000],
    resume_repeats=3,
    fan_viewers=[1, 10, 100, 500],
    fan_chunks=200,
    fan_rate=20.0,
    cluster_tee_chunks=50_000,
    cluster_tee_repeats=5,
    rehearsal_ramp=60.0,
    rehearsal_window=20.0,
    observe_repeats=5,
)


@dataclass
class PeerStatus:
    available: bool
    reason: str = ""
    versions: dict[str, str] = field(default_factory=dict)


@dataclass
class Context:
    params: Params
    redis_url: str
    probe: RedisProbe
    server_config: ServerConfig
    peer: PeerStatus
    log: Callable[[str], None]
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    trivial_request_ms: dict[str, float] = field(default_factory=dict)
    server_logs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """What went wrong in each server (its warnings and exceptions, counted), by server."""
    variants: tuple[str, ...] = ("plain", "memory", "redis", "peer")

    def wants(self, variant: str) -> bool:
        return variant in self.variants and (variant != "peer" or self.peer.available)

    def prefix(self, scenario: str) -> str:
        return f"bench-{self.run_id}-{scenario}"

    def memory_server(self, name: str = "memory") -> Server:
        return Server(name, env={"BENCH_STORE": "memory"}, config=self.server_config)

    def redis_server(self, name: str, scenario: str) -> Server:
        env = {
            "BENCH_STORE": "redis",
            "BENCH_REDIS_URL": self.redis_url,
            "BENCH_KEY_PREFIX": self.prefix(scenario),
        }
        return Server(name, env=env, config=self.server_config)

    def peer_server(self, name: str, scenario: str) -> Server:
        env = {"REDIS_URL": self.redis_url, "PEER_KEY_PREFIX": self.prefix(scenario) + "-peer"}
        return Server(name, kind="node", env=env)

    @contextlib.contextmanager
    def servers(self, servers: Sequence[Server]) -> Iterator[Sequence[Server]]:
        try:
            with running(servers):
                for server in servers:
                    key = f"{server.kind}:{server.name}"
                    self.trivial_request_ms[key] = round(server.trivial_request_ms or 0.0, 3)
                yield servers
        finally:
            for server in servers:
                if server.log_summary:
                    self.server_logs.setdefault(f"{server.kind}:{server.name}", []).append(server.log_summary)

    async def cleanup(self, scenario: str) -> int:
        return await self.probe.delete_prefix(self.prefix(scenario))


# -- helpers --


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


async def redis_calls(server: Server) -> dict[str, int]:
    """What a Redis-store server has sent so far: commands by name, pipelines, script calls (see app.py)."""
    import json  # noqa: PLC0415

    status, body = await asyncio.to_thread(http_request, server.port, "GET", "/bench/redis-calls")
    if status != 200:  # noqa: PLR2004
        raise BenchmarkError(f"{server.name}: /bench/redis-calls answered {status}")
    return {str(k): int(v) for k, v in json.loads(body).items()}


def _diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0) > 0}


_PIPELINES = ("pipelines", "shard_pipelines")


def round_trips(calls: dict[str, int]) -> dict[str, Any]:
    """A process's counters (a difference of two ``redis_calls``) as round trips and where they come from.

    ``commands``: the commands sent one by one (``hget``, ``subscribe``, ...; for the peer, everything);
    ``pipelines``: the store's pipelines of script calls (on a cluster, one per shard each touched);
    ``scripts``: the script calls those pipelines carried, by name (``read`` is the store's read).
    """
    commands = {k: v for k, v in calls.items() if not k.startswith("script:") and k not in _PIPELINES}
    pipelines = calls.get("shard_pipelines", calls.get("pipelines", 0))
    scripts = {k.removeprefix("script:"): v for k, v in calls.items() if k.startswith("script:")}
    return {
        "round_trips": sum(commands.values()) + pipelines,
        "pipelines": pipelines,
        "batches": calls.get("pipelines", 0),
        "commands": commands,
        "scripts": scripts,
    }


def per_chunk(trips: dict[str, Any], chunks: int, digits: int = 4) -> dict[str, Any]:
    """``round_trips`` divided by ``chunks``."""
    return {
        "round_trips": round(trips["round_trips"] / chunks, digits),
        "pipelines": round(trips["pipelines"] / chunks, digits),
        "commands": {k: round(v / chunks, digits) for k, v in trips["commands"].items()},
        "scripts": {k: round(v / chunks, digits) for k, v in trips["scripts"].items()},
    }


async def quiesce(servers: Sequence[Server], *, below: float = 0.05, timeout: float = 15.0) -> None:
    """Wait until every server is idle (less than ``below`` of a core over 0.25 s): the last run is over."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = [server.cpu_seconds() for server in servers]
        await asyncio.sleep(0.25)
        used = [server.cpu_seconds() - b for server, b in zip(servers, before, strict=True)]
        if max(used) / 0.25 < below:
            return


async def control(server: Server, method: str, path: str) -> int:
    status, _ = await asyncio.to_thread(http_request, server.port, method, path)
    return status


async def sample_connections(
    probe: Any, servers: Sequence[Server], stop: asyncio.Event, interval: float = 0.5
) -> dict[str, Any]:
    """Redis connections of each server process (CLIENT LIST, matched to its sockets) until ``stop``;
    ``probe`` is the Redis's or a cluster's (then every node's connections, summed)."""
    samples: list[dict[str, int]] = []
    while not stop.is_set():
        with contextlib.suppress(Exception):
            samples.append(await probe.clients_of(servers))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
    names = [server.name for server in servers]
    return {
        "peak": {name: max((s[name] for s in samples), default=0) for name in names},
        "last": samples[-1] if samples else {},
        "samples": len(samples),
    }


async def start_producer(
    producer: dict[str, Any],
    *,
    deadline: float,
    latency: bool = True,
    window: tuple[float, float] | None = None,
) -> tuple[asyncio.Task[dict[str, Any]], str | None]:
    """Start reading the stream that ``producer`` starts; return the reading task and the stream's id."""
    loop = asyncio.get_running_loop()
    headers: asyncio.Future[dict[str, Any]] = loop.create_future()

    def on_line(line: dict[str, Any]) -> None:
        if line.get("type") == "headers" and not headers.done():
            headers.set_result(line)

    producer = {**producer, "report_headers": True}
    task = asyncio.create_task(
        run_clients([producer], deadline=deadline, latency=latency, window=window, on_line=on_line)
    )
    done, _ = await asyncio.wait([headers, task], return_when=asyncio.FIRST_COMPLETED, timeout=30)
    if headers not in done:
        result = task.result() if task in done else None
        raise BenchmarkError(f"the producer request did not answer: {result}")
    line = headers.result()
    if line["status"] != 200:  # noqa: PLR2004
        raise BenchmarkError(f"the producer request answered {line['status']}")
    return task, line.get("stream_id")


def _latency_summary(latencies: Sequence[float]) -> dict[str, float | None]:
    return {
        "p50_ms": _round(percentile(latencies, 50)),
        "p99_ms": _round(percentile(latencies, 99)),
        "max_ms": _round(max(latencies) if latencies else None),
        "samples": len(latencies),
    }


async def tee_once(server: Server, path: str, chunks: int, tag: str) -> dict[str, Any]:
    """One read of a fast generator of ``chunks`` items: events/s, server and client CPU per event."""
    cpu = server.cpu_seconds()
    result = await run_clients(
        [stream(server.port, f"{path}?n={chunks}&size={ITEM_PAD}", tag=tag)],
        deadline=time.time() + 300,
    )
    await asyncio.sleep(0.05)
    s = result["streams"][0]
    seconds = s["t_last"] - s["t_start"]
    return {
        "seconds": round(seconds, 4),
        "events_per_s": round(s["events"] / seconds) if seconds > 0 else 0,
        "server_cpu_us_per_event": round(1e6 * (server.cpu_seconds() - cpu) / max(1, s["events"]), 2),
        "client_cpu_us_per_event": round(1e6 * result["cpu_total_s"] / max(1, s["events"]), 2),
        "problems": stream_problems(result["streams"], chunks),
    }


# -- 1. tee throughput --


async def tee_throughput(ctx: Context) -> dict[str, Any]:
    """One stream, a generator that yields as fast as it can: events/s end to end, and the ratio to plain."""
    p = ctx.params
    n = p.tee_chunks
    memory, redis = ctx.memory_server(), ctx.redis_server("redis-store", "tee")
    runs: dict[str, list[dict[str, Any]]] = {
        name: [] for name in ("plain", "memory", "redis") if ctx.wants(name)
    }
    try:
        with ctx.servers([memory, redis]):
            targets = {
                name: target
                for name, target in {
                    "plain": (memory, "/plain"),
                    "memory": (memory, "/tee"),
                    "redis": (redis, "/tee"),
                }.items()
                if ctx.wants(name)
            }

            for name, (
                server,
                path,
            ) in targets.items():  # warm-up: imports, first-request paths, JIT-less caches
                await tee_once(server, path, 2000, f"warm-{name}")
            calls_before = await redis_calls(redis) if "redis" in targets else {}
            for repeat in range(p.tee_repeats):
                for name, (server, path) in targets.items():
                    runs[name].append(await tee_once(server, path, n, f"{name}-{repeat}"))
                    ctx.log(f"  tee {name} #{repeat + 1}: {runs[name][-1]['events_per_s']:,} events/s")
            await asyncio.sleep(0.3)
            calls = _diff(await redis_calls(redis), calls_before) if "redis" in targets else {}
    finally:
        await ctx.cleanup("tee")
    plain_rate = _median([r["events_per_s"] for r in runs.get("plain", [])]) or None
    variants = {}
    for name, items in runs.items():
        rate = _median([r["events_per_s"] for r in items])
        variants[name] = {
            "label": VARIANTS[name],
            "events_per_s": round(rate or 0),
            "ratio_to_plain": _round((rate or 0) / plain_rate) if plain_rate else None,
            "server_cpu_us_per_event": _median([r["server_cpu_us_per_event"] for r in items]),
            "client_cpu_us_per_event": _median([r["client_cpu_us_per_event"] for r in items]),
            "runs": items,
        }
    total = n * p.tee_repeats
    trips = round_trips(calls)
    return {
        "chunks": n,
        "repeats": p.tee_repeats,
        "variants": variants,
        "redis_round_trips": trips,
        "redis_round_trips_per_chunk": round(trips["round_trips"] / total, 4),
    }


# -- 2. concurrency --


async def concurrency(ctx: Context) -> dict[str, Any]:
    """N concurrent streams of a paced generator: delivered chunks/s, added latency, server and client CPU."""
    p = ctx.params
    memory, redis = ctx.memory_server(), ctx.redis_server("redis-store", "conc")
    points: list[dict[str, Any]] = []
    try:
        with ctx.servers([memory, redis]):
            targets = {"plain": (memory, "/plain"), "memory": (memory, "/tee"), "redis": (redis, "/tee")}
            for count in p.conc_counts:
                for name, (server, path) in targets.items():
                    if not ctx.wants(name):
                        continue
                    await quiesce([memory, redis])
                    point = await _concurrency_point(ctx, name, server, path, count)
                    points.append(point)
                    ctx.log(
                        f"  {count} streams {name}: {point['delivered_per_s']:,.0f}/s of "
                        f"{point['offered_per_s']:,.0f}, p50 {point['p50_ms']} ms p99 {point['p99_ms']} ms, "
                        f"server {point['server_cpu_pct']}% "
                        f"client {point['client_cpu_pct']}%"
                    )
    finally:
        await ctx.cleanup("conc")
    crossing = {}
    for name in ("plain", "memory", "redis"):
        over = [pt["streams"] for pt in points if pt["variant"] == name and (pt["p99_ms"] or 0) > 100]  # noqa: PLR2004
        crossing[name] = min(over) if over else None
    return {
        "rate_per_stream": p.conc_rate,
        "window_s": p.conc_window,
        "ramp_s": p.conc_ramp,
        "points": points,
        "p99_over_100ms_at": crossing,
        "max_streams_tested": max(p.conc_counts),
    }


@dataclass
class Load:
    """A paced load: ``count`` streams at ``rate`` chunks/s each, started over ``ramp`` s, measured over
    ``window`` s after ``settle`` s more."""

    count: int
    rate: float
    ramp: float
    settle: float
    window: float

    @property
    def chunks(self) -> int:
        return int(self.rate * (self.ramp + self.settle + self.window + 0.3)) + 1


async def _concurrency_point(
    ctx: Context, name: str, server: Server, path: str, count: int
) -> dict[str, Any]:
    p = ctx.params
    load = Load(count, p.conc_rate, p.conc_ramp, p.conc_settle, p.conc_window)
    point = await paced_point(name, [(server, path)], load, probe=ctx.probe, redis=name == "redis")
    point["server_cpu_pct"] = point["server_cpu_pct_by_process"][server.name]
    point["server_rss_mib"] = point["server_rss_mib_by_process"][server.name]
    return point


async def paced_point(
    name: str,
    targets: Sequence[tuple[Server, str]],
    load: Load,
    *,
    probe: Any,
    redis: bool,
    processes: int | None = None,
    connections_every: float = 0.5,
    during: Callable[[tuple[float, float]], Coroutine[Any, Any, Any]] | None = None,
) -> dict[str, Any]:
    """``load`` on ``targets`` (the streams dealt round-robin to them): delivered chunks/s in the window,
    added latency, CPU of each server, of Redis (``probe``: the server or a cluster's) and of the client;
    with ``redis``, the servers' Redis connections and round trips over the window. ``during`` runs
    alongside, given the window; what it returns is the point's ``during``."""
    rate, count = load.rate, load.count
    chunks = load.chunks
    t0 = time.time() + 0.6 + count / 5000  # the load generator processes start in the meantime
    window = (t0 + load.ramp + load.settle, t0 + load.ramp + load.settle + load.window)
    streams = [
        stream(
            targets[i % len(targets)][0].port,
            f"{targets[i % len(targets)][1]}?n={chunks}&rate={rate}&size={ITEM_PAD}",
            start_at=t0 + load.ramp * i / count,
            tag=i,
        )
        for i in range(count)
    ]
    servers = list({server.name: server for server, _ in targets}.values())
    if processes is None:
        processes = 1 if count < 500 else 2  # noqa: PLR2004 - one client process per core from 500 streams
    cpu = CpuWindow(servers, probe)
    sampler = asyncio.create_task(cpu.between(*window))
    stop = asyncio.Event()
    connections = (
        asyncio.create_task(sample_connections(probe, servers, stop, connections_every)) if redis else None
    )
    extra = asyncio.create_task(during(window)) if during is not None else None
    calls = asyncio.create_task(_calls_at(servers, window[0])) if redis else None
    calls_end = asyncio.create_task(_calls_at(servers, window[1])) if redis else None
    result = await run_clients(
        streams,
        processes=processes,
        window=window,
        latency=True,
        deadline=t0 + load.ramp + chunks / rate + 6.0 + count / 2000,
    )
    await sampler
    stop.set()
    percents = cpu.percent()
    point: dict[str, Any] = {
        "variant": name,
        "streams": count,
        "rate_per_stream": rate,
        "offered_per_s": count * rate,
        "delivered_per_s": round(result["events_in_window"] / load.window, 1),
        **_latency_summary(result["latencies_ms"]),
        "server_cpu_pct": round(sum(percents[s.name] for s in servers), 1),
        "server_cpu_pct_by_process": {s.name: percents[s.name] for s in servers},
        "redis_cpu_pct": percents[REDIS_SERVER],
        "client_cpu_pct": round(100.0 * (result["cpu_window_s"] or 0.0) / load.window, 1),
        "client_processes": result["processes"],
        "server_rss_mib_by_process": {s.name: round(s.rss_mib(), 1) for s in servers},
        "incomplete_streams": len(stream_problems(result["streams"], chunks)),
        "problems": stream_problems(result["streams"], chunks)[:5],
    }
    if connections is not None:
        point["redis_connections"] = await connections
    before, after = (
        (await calls, await calls_end) if calls is not None and calls_end is not None else (None, None)
    )
    if before is not None and after is not None:
        trips = {name: round_trips(_diff(after[name], before[name])) for name in after}
        point["round_trips_per_s_by_process"] = {
            name: round(trip["round_trips"] / load.window, 1) for name, trip in trips.items()
        }
        point["script_calls_per_s_by_process"] = {
            name: round(sum(trip["scripts"].values()) / load.window, 1) for name, trip in trips.items()
        }
        point["round_trips_in_window"] = trips
    if extra is not None:
        point["during"] = await extra
    return point


# -- 3. Redis cost --


async def redis_cost(ctx: Context) -> dict[str, Any]:
    """Redis commands and round trips per chunk, memory per stream and per chunk, connections per process."""
    p = ctx.params
    server = ctx.redis_server("redis-store", "cost")
    out: dict[str, Any] = {}
    try:
        with ctx.servers([server]):
            out["fast"] = await _cost_of_stream(ctx, server, p.cost_fast_chunks, 0.0)
            ctx.log(f"  fast generator: {out['fast']['round_trips_per_chunk']} round trips per chunk")
            out["paced"] = await _cost_of_stream(ctx, server, p.cost_paced_chunks, p.cost_paced_rate)
            ctx.log(f"  paced generator: {out['paced']['round_trips_per_chunk']} round trips per chunk")
            out["memory"] = await _memory_per_stream(ctx, server)
            ctx.log(
                f"  memory: {out['memory']['bytes_per_stream']} B per stream, "
                f"{out['memory']['bytes_per_chunk']} B per chunk"
            )
            await quiesce([server])
            out["followers"] = await _followers_connections(ctx, server)
            ctx.log(f"  {p.cost_followers} followers of one stream: {out['followers']['connections']}")
    finally:
        await ctx.cleanup("cost")
    return out


async def _cost_of_stream(ctx: Context, server: Server, chunks: int, rate: float) -> dict[str, Any]:
    counter = CommandCounter(ctx.probe)
    calls_before = await redis_calls(server)
    await counter.start()
    result = await run_clients(
        [stream(server.port, f"/tee?n={chunks}&rate={rate}&size={ITEM_PAD}", tag="cost")],
        deadline=time.time() + 300,
    )
    await asyncio.sleep(0.5)  # the producer's last write and the follower's unsubscribe
    commands = await counter.stop()
    trips = round_trips(_diff(await redis_calls(server), calls_before))
    return {
        "chunks": chunks,
        "rate": rate or "as fast as possible",
        "round_trips": trips,
        "round_trips_per_chunk": round(trips["round_trips"] / chunks, 4),
        "script_calls_per_pipeline": _round(sum(trips["scripts"].values()) / max(1, trips["batches"])),
        "commands_incl_lua": commands,
        "commands_per_chunk_incl_lua": round(sum(commands.values()) / chunks, 3),
        "problems": stream_problems(result["streams"], chunks),
    }


async def _memory_per_stream(ctx: Context, server: Server) -> dict[str, Any]:
    prefix = ctx.prefix("cost")
    sizes: dict[int, dict[str, float]] = {}
    payload = len(f"{12345} {time.time():.6f} {'x' * ITEM_PAD}")
    for chunks in (1, 100, 1000):
        result = await run_clients(
            [
                stream(server.port, f"/tee?n={chunks}&size={ITEM_PAD}", tag=i)
                for i in range(ctx.params.cost_memory_streams)
            ],
            deadline=time.time() + 120,
        )
        events, meta = [], []
        keys = await ctx.probe.keys(prefix)
        for s in result["streams"]:
            events.append(await _key_bytes(ctx.probe, keys, f":{s['stream_id']}:events"))
            meta.append(await _key_bytes(ctx.probe, keys, f":{s['stream_id']}:meta"))
        sizes[chunks] = {"events_key": statistics.mean(events), "meta_key": statistics.mean(meta)}
    per_chunk = (sizes[1000]["events_key"] - sizes[100]["events_key"]) / 900
    fixed = sizes[1]["events_key"] + sizes[1]["meta_key"] - 2 * per_chunk  # 1 chunk + the terminal event
    return {
        "payload_bytes_per_chunk": payload,
        "by_chunks": {str(k): {kk: round(vv) for kk, vv in v.items()} for k, v in sizes.items()},
        "bytes_per_chunk": round(per_chunk, 1),
        "bytes_per_stream": round(fixed),
        "note": "MEMORY USAGE ... SAMPLES 0 of the stream's events (Redis Stream) and meta (hash) keys",
    }


async def _key_bytes(probe: RedisProbe, keys: Sequence[bytes], suffix: str) -> int:
    """MEMORY USAGE of the one key among ``keys`` that ends with ``suffix`` (a stream's events or meta)."""
    found = [key for key in keys if key.decode().endswith(suffix)]
    if len(found) != 1:
        raise BenchmarkError(f"expected one key ending with {suffix!r}, found {found[:3]}")
    return (await probe.memory_usage(found))[found[0].decode()]


async def _followers_connections(ctx: Context, server: Server) -> dict[str, Any]:
    p = ctx.params
    rate = 20.0
    followers = p.cost_followers
    delay = 1.5 + followers / 1000
    chunks = int(rate * p.cost_followers_seconds)
    deadline = time.time() + delay + chunks / rate + 30
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_connections(ctx.probe, [server], stop, interval=0.25))
    producer, stream_id = await start_producer(
        stream(server.port, f"/tee?n={chunks}&rate={rate}&delay={delay}", tag="producer"), deadline=deadline
    )
    t0 = time.time() + 0.3
    viewers = [
        stream(server.port, f"/resumable/streams/{stream_id}", start_at=t0 + 0.5 * i / followers, tag=i)
        for i in range(followers - 1)
    ]
    watched = await run_clients(viewers, processes=2, latency=True, deadline=deadline)
    first = await producer
    stop.set()
    sampled = await sampler
    latencies = watched["latencies_ms"] + first["latencies_ms"]
    return {
        "followers": followers,
        "streams": 1,
        "connections": {"peak": sampled["peak"][server.name], "at_end": sampled["last"].get(server.name)},
        **_latency_summary(latencies),
        "incomplete_viewers": len(stream_problems(watched["streams"] + first["streams"], chunks)),
    }


# -- 4. resume --


async def resume(ctx: Context) -> dict[str, Any]:
    """Catch-up time for a backlog vs reading it live, and time to first event."""
    p = ctx.params
    memory = ctx.memory_server()
    redis_a, redis_b = ctx.redis_server("redis-a", "resume"), ctx.redis_server("redis-b", "resume")
    servers: list[Server] = [memory, redis_a, redis_b]
    if ctx.wants("peer"):
        servers += [ctx.peer_server("peer-a", "resume"), ctx.peer_server("peer-b", "resume")]
    rows: list[dict[str, Any]] = []
    try:
        with ctx.servers(servers):
            await _resume_round(ctx, servers, 1000, warm_up=True)
            for backlog in p.resume_backlogs:
                runs = [await _resume_round(ctx, servers, backlog) for _ in range(p.resume_repeats)]
                for key in runs[0]:
                    live = _median([r[key]["live_s"] for r in runs])
                    catch = {
                        where: _median([r[key]["catch_up_s"][where] for r in runs])
                        for where in runs[0][key]["catch_up_s"]
                    }
                    ttfe = {
                        where: _median([r[key]["ttfe_ms"][where] for r in runs])
                        for where in runs[0][key]["ttfe_ms"]
                    }
                    row = {
                        "variant": key,
                        "backlog": backlog,
                        "live_s": _round(live, 4),
                        "live_ttfe_ms": _round(_median([r[key]["live_ttfe_ms"] for r in runs])),
                        "catch_up_s": {k: _round(v, 4) for k, v in catch.items()},
                        "catch_up_ttfe_ms": {k: _round(v) for k, v in ttfe.items()},
                        "catch_up_over_live": {
                            k: _round(v / live if live and v else None) for k, v in catch.items()
                        },
                        "problems": sorted({x for r in runs for x in r[key]["problems"]})[:5],
                    }
                    rows.append(row)
                    ctx.log(
                        f"  backlog {backlog} {key}: live {row['live_s']} s, catch-up {row['catch_up_s']}"
                    )
    finally:
        await ctx.cleanup("resume")
    return {"rows": rows, "backlogs": p.resume_backlogs, "repeats": p.resume_repeats}


async def _timed(server: Server, path: str, events: int, tag: str) -> tuple[dict[str, Any], list[str]]:
    result = await run_clients(
        [stream(server.port, path, stop_after=events, tag=tag)], deadline=time.time() + 300
    )
    s = result["streams"][0]
    return s, stream_problems(result["streams"], events)


async def _resume_round(
    ctx: Context, servers: Sequence[Server], backlog: int, *, warm_up: bool = False
) -> dict[str, dict[str, Any]]:
    memory, redis_a, redis_b = servers[0], servers[1], servers[2]
    out: dict[str, dict[str, Any]] = {}
    query = f"n={backlog}&size={ITEM_PAD}"

    if ctx.wants("plain"):
        live, problems = await _timed(memory, f"/plain?{query}", backlog, "plain")
        out["plain"] = {
            "live_s": live["t_last"] - live["t_start"],
            "live_ttfe_ms": 1000 * (live["t_first"] - live["t_start"]),
            "catch_up_s": {},
            "ttfe_ms": {},
            "problems": problems,
        }
    ours = {
        "memory": (memory, {"same process": memory}),
        "redis": (redis_a, {"same process": redis_a, "other process": redis_b}),
    }
    for key, (producer, readers) in ours.items():
        if not ctx.wants(key):
            continue
        live, problems = await _timed(producer, f"/tee?{query}&hold={HOLD}", backlog, f"{key}-live")
        stream_id = live["stream_id"]
        entry: dict[str, Any] = {
            "live_s": live["t_last"] - live["t_start"],
            "live_ttfe_ms": 1000 * (live["t_first"] - live["t_start"]),
            "catch_up_s": {},
            "ttfe_ms": {},
            "problems": problems,
        }
        for where, reader in readers.items():
            caught, problems = await _timed(
                reader, f"/resumable/streams/{stream_id}", backlog, f"{key}-{where}"
            )
            entry["catch_up_s"][where] = caught["t_last"] - caught["t_start"]
            entry["ttfe_ms"][where] = 1000 * (caught["t_first"] - caught["t_start"])
            entry["problems"] += problems
        await control(producer, "DELETE", f"/resumable/streams/{stream_id}")
        out[key] = entry
    if ctx.wants("peer"):
        peer_a, peer_b = servers[3], servers[4]
        stream_id = f"r{uuid.uuid4().hex}"
        live, problems = await _timed(
            peer_a, f"/gen?id={stream_id}&{query}&hold={HOLD}", backlog, "peer-live"
        )
        entry = {
            "live_s": live["t_last"] - live["t_start"],
            "live_ttfe_ms": 1000 * (live["t_first"] - live["t_start"]),
            "catch_up_s": {},
            "ttfe_ms": {},
            "problems": problems,
        }
        for where, reader in {"same process": peer_a, "other process": peer_b}.items():
            caught, problems = await _timed(reader, f"/resume?id={stream_id}", backlog, f"peer-{where}")
            entry["catch_up_s"][where] = caught["t_last"] - caught["t_start"]
            entry["ttfe_ms"][where] = 1000 * (caught["t_first"] - caught["t_start"])
            entry["problems"] += problems
        await control(peer_a, "POST", f"/release?id={stream_id}")
        out["peer"] = entry
    if not warm_up:
        await quiesce(servers[:3])
    return out


# -- 5. fan-out --


async def fanout(ctx: Context) -> dict[str, Any]:
    """One stream, many viewers on two worker processes: Redis reads per chunk must not grow with viewers."""
    p = ctx.params
    memory = ctx.memory_server()
    redis_a, redis_b = ctx.redis_server("redis-a", "fan"), ctx.redis_server("redis-b", "fan")
    servers: list[Server] = [memory, redis_a, redis_b]
    if ctx.wants("peer"):
        servers += [ctx.peer_server("peer-a", "fan"), ctx.peer_server("peer-b", "fan")]
    rows: list[dict[str, Any]] = []
    try:
        with ctx.servers(servers):
            for viewers in p.fan_viewers:
                for variant in ("plain", "memory", "redis", "peer"):
                    if not ctx.wants(variant):
                        continue
                    await quiesce(servers)
                    row = await fanout_run(ctx, servers, variant, viewers)
                    rows.append(row)
                    ctx.log(_fan_line(row))
    finally:
        await ctx.cleanup("fan")
    return {"rows": rows, "chunks": p.fan_chunks, "rate": p.fan_rate}


def _fan_line(row: dict[str, Any]) -> str:
    return (
        f"  {row['viewers']} viewers {row['variant']}: {row.get('reads_command', 'reads')}/chunk "
        f"{row.get('reads_per_chunk')}, round trips/chunk {row.get('round_trips_per_chunk')} "
        f"(mid-stream: {row.get('chunk_round_trips_per_chunk')}), p99 {row['p99_ms']} ms"
    )


async def fanout_run(
    ctx: Context,
    servers: Sequence[Server],
    variant: str,
    viewers: int,
    *,
    probe: Any = None,
) -> dict[str, Any]:
    """One fan-out run: ``servers`` are (memory, first Redis-store process, second one[, peer, peer]);
    ``probe`` is the Redis's (default) or a cluster's."""
    p = ctx.params
    memory, redis_a, redis_b = servers[0], servers[1], servers[2]
    chunks, rate = p.fan_chunks, p.fan_rate
    delay = 1.5 + viewers * 0.004  # the viewers attach before the first chunk
    query = f"n={chunks}&rate={rate}&size={ITEM_PAD}&delay={delay}"
    deadline = time.time() + delay + chunks / rate + 30
    processes = 1 if viewers < 100 else 2  # noqa: PLR2004
    probe = probe or ctx.probe
    counter = CommandCounter(probe)
    if variant in ("plain", "memory"):
        measured = [memory]
    elif variant in ("redis", "redis-cluster"):
        measured = [redis_a, redis_b]
    else:
        measured = [servers[3], servers[4]]
    counts_redis = variant not in ("plain", "memory")
    calls_before = {s.name: await redis_calls(s) for s in measured} if counts_redis else {}
    cpu = CpuWindow(measured, probe)
    await cpu.start()
    await counter.start()
    # The round trips of the chunks themselves: counted from just before the first chunk (every viewer
    # has attached by then, or is reported late), so the viewers' own attaching is left out; and in the
    # middle of the stream (from 0.5 s after its first chunk to 0.5 s before its last), so its start and
    # end are left out too.
    first = time.time() + delay
    marks = (
        [
            asyncio.create_task(_calls_at(measured, at))
            for at in (first - 0.2, first + 0.5, first + chunks / rate - 0.5)
        ]
        if counts_redis and variant != "peer"
        else []
    )
    if variant == "plain":
        results, late = await _fan_plain(memory, query, viewers, processes, deadline), None
    else:
        results, late = await _fan_shared(
            measured, variant, query, viewers=viewers, processes=processes, deadline=deadline
        )
    await asyncio.sleep(0.3)
    await cpu.stop()
    commands = await counter.stop()
    latencies = [x for r in results for x in r["latencies_ms"]]
    all_streams = [s for r in results for s in r["streams"]]
    row: dict[str, Any] = {
        "variant": variant,
        "viewers": viewers,
        "delivered_events": sum(s["events"] for s in all_streams),
        "expected_events": viewers * chunks,
        **_latency_summary(latencies),
        "cpu_pct": cpu.percent(),
        "client_processes": max(r["processes"] for r in results),
        "incomplete_viewers": len(stream_problems(all_streams, chunks)),
        "problems": stream_problems(all_streams, chunks)[:5],
    }
    if variant != "plain":
        row["viewers_attached_after_first_chunk"] = (
            late  # they replay its start: their latency is not fan-out's
        )
    if counts_redis:
        row["viewers_by_process"] = {measured[0].name: (viewers + 1) // 2, measured[-1].name: viewers // 2}
        row.update(await _fan_round_trips(measured, calls_before, marks, chunks, rate))
        row["redis_commands_incl_lua"] = commands
        row["redis_commands_per_chunk_incl_lua"] = round(sum(commands.values()) / chunks, 3)
    return row


async def _fan_round_trips(
    measured: Sequence[Server],
    calls_before: dict[str, dict[str, int]],
    marks: list[asyncio.Task[dict[str, dict[str, int]] | None]],
    chunks: int,
    rate: float,
) -> dict[str, Any]:
    """A fan-out run's round trips, by process: over the whole run; from just before the first chunk; and in
    the middle of the stream (``marks``: the counters at those times), with the reads that carried the
    chunks to the viewers. The peer has no marks: its PUBLISH calls are its reads."""
    row: dict[str, Any] = {}
    after = {s.name: await redis_calls(s) for s in measured}
    calls = {name: round_trips(_diff(after[name], calls_before[name])) for name in after}
    row["round_trips_by_process"] = calls
    row["round_trips_per_chunk"] = round(sum(c["round_trips"] for c in calls.values()) / chunks, 3)
    if not marks:  # the peer: one PUBLISH per chunk per viewer carries the chunks
        row["reads_command"] = "PUBLISH"
        row["reads_per_chunk"] = round(
            sum(c["commands"].get("publish", 0) for c in calls.values()) / chunks, 3
        )
        row["reads_per_chunk_by_process"] = {
            name: round(c["commands"].get("publish", 0) / chunks, 3) for name, c in calls.items()
        }
        return row
    first, middle, end = [await mark for mark in marks]
    row["reads_command"] = "read script"
    row["reads_per_chunk"] = None
    if first is not None:
        since_first = {name: round_trips(_diff(after[name], first[name])) for name in after}
        row["first_chunk_round_trips_per_chunk"] = round(
            sum(c["round_trips"] for c in since_first.values()) / chunks, 3
        )
    if middle is None or end is None:
        return row  # a server did not answer in time
    middle_chunks = max(1, round(rate * (chunks / rate - 1.0)))
    trips = {name: per_chunk(round_trips(_diff(end[name], middle[name])), middle_chunks, 3) for name in after}
    row["chunk_round_trips_chunks"] = middle_chunks
    row["chunk_round_trips_by_process"] = trips
    row["chunk_round_trips_per_chunk"] = round(sum(c["round_trips"] for c in trips.values()), 3)
    row["reads_per_chunk"] = round(sum(c["scripts"].get("read", 0.0) for c in trips.values()), 3)
    row["reads_per_chunk_by_process"] = {name: c["scripts"].get("read", 0.0) for name, c in trips.items()}
    return row


async def _calls_at(servers: Sequence[Server], at: float) -> dict[str, dict[str, int]] | None:
    """Each server's ``redis_calls`` at wall-clock time ``at`` (None if a server did not answer in time)."""
    await asyncio.sleep(max(0.0, at - time.time()))
    try:
        return {s.name: await redis_calls(s) for s in servers}
    except (OSError, BenchmarkError):  # an overloaded server: the point goes without its round trips
        return None


async def _fan_plain(
    server: Server, query: str, viewers: int, processes: int, deadline: float
) -> list[dict[str, Any]]:
    t0 = time.time() + 0.3
    streams = [
        stream(server.port, f"/plain?{query}", start_at=t0 + 0.3 * i / viewers, tag=i) for i in range(viewers)
    ]
    return [await run_clients(streams, processes=processes, latency=True, deadline=deadline)]


async def _fan_shared(
    measured: Sequence[Server], variant: str, query: str, *, viewers: int, processes: int, deadline: float
) -> tuple[list[dict[str, Any]], int]:
    """One producer request on the first process, the other viewers alternating between the processes."""
    first, second = measured[0], measured[-1]
    if variant == "peer":
        peer_id = f"f{uuid.uuid4().hex}"
        producer_path, path = f"/gen?id={peer_id}&{query}", f"/resume?id={peer_id}"
    else:
        producer_path, path = f"/tee?{query}", ""
    producer, stream_id = await start_producer(
        stream(first.port, producer_path, tag="producer"), deadline=deadline
    )
    path = path or f"/resumable/streams/{stream_id}"
    t0 = time.time() + 0.2
    others = [
        stream((second if i % 2 == 0 else first).port, path, start_at=t0 + 0.3 * i / viewers, tag=i)
        for i in range(viewers - 1)
    ]
    watching = (
        [asyncio.create_task(run_clients(others, processes=processes, latency=True, deadline=deadline))]
        if others
        else []
    )
    results = [await producer, *[await task for task in watching]]
    first_chunk = results[0]["streams"][0]["t_first"]
    late = sum(
        1 for r in results[1:] for s in r["streams"] if s["t_headers"] == 0 or s["t_headers"] > first_chunk
    )
    return results, late


# -- the peer --


# -- memory with large items --


async def large_items(ctx: Context) -> dict[str, Any]:
    """A fast generator of large items (200 x 1 MiB) read by one client: peak RSS above the idle process."""
    p = ctx.params
    out: dict[str, Any] = {"items": p.large_items, "item_bytes": p.large_size, "variants": {}}
    for variant in ("plain", "memory", "redis"):
        if not ctx.wants(variant):
            continue
        server = ctx.redis_server("large-redis", "large") if variant == "redis" else ctx.memory_server()
        path = "/plain" if variant == "plain" else "/tee"
        with ctx.servers([server]):
            await quiesce([server])
            idle = server.rss_mib()
            done = asyncio.Event()
            sampler = asyncio.create_task(_peak_rss(server, done))
            started = time.monotonic()
            result = await run_clients(
                [stream(server.port, f"{path}?n={p.large_items}&size={p.large_size}")],
                deadline=time.time() + 120,
                latency=False,
            )
            elapsed = time.monotonic() - started
            done.set()
            peak = max(idle, await sampler)
            problems = stream_problems(result["streams"], p.large_items)
            out["variants"][variant] = {
                "idle_rss_mib": _round(idle, 1),
                "peak_rss_mib": _round(peak, 1),
                "peak_growth_mib": _round(peak - idle, 1),
                "seconds": _round(elapsed, 2),
                "mib_per_s": _round(p.large_items * p.large_size / 2**20 / elapsed, 1),
                "problems": problems,
            }
            ctx.log(f"large {variant}: {out['variants'][variant]}")
        await ctx.cleanup("large")
    return out


async def _peak_rss(server: Server, done: asyncio.Event) -> float:
    """The server's peak RSS in MiB, sampled every 5 ms until ``done``."""
    peak = server.rss_mib()
    while not done.is_set():
        peak = max(peak, server.rss_mib())
        await asyncio.sleep(0.005)
    return peak


def prepare_peer(log: Callable[[str], None]) -> PeerStatus:
    """``npm install`` the peer into benchmarks/peer/node_modules, when Node and npm are here."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        return PeerStatus(
            available=False, reason="node or npm not found: the resumable-stream peer is skipped"
        )
    versions = {
        "node": subprocess.run(
            [node, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
    }
    log("peer: npm install in benchmarks/peer")
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PEER_DIR,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if installed.returncode != 0:
        return PeerStatus(
            available=False, reason=f"npm install failed: {installed.stderr[-500:]}", versions=versions
        )
    import json  # noqa: PLC0415

    for package in ("resumable-stream", "redis"):
        manifest = PEER_DIR / "node_modules" / package / "package.json"
        versions[package] = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    return PeerStatus(available=True, versions=versions)


SCENARIOS = {
    "large": large_items,
    "tee": tee_throughput,
    "concurrency": concurrency,
    "redis_cost": redis_cost,
    "resume": resume,
    "fanout": fanout,
}
