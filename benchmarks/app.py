"""The app every benchmark server runs: ``uvicorn benchmarks.app:app``, configured by its environment.

- ``BENCH_STORE``: ``memory`` (default) or ``redis``;
- ``BENCH_REDIS_URL`` and ``BENCH_KEY_PREFIX``: the Redis store's URL and this run's own key prefix;
- ``BENCH_REDIS_CLUSTER=1``: the URL names a node of a Redis Cluster (``from_url(url, cluster=True)``);
- ``BENCH_REPLICAS``: the store's ``replicas`` (a write counts once that many replicas have it; 0 default);
- ``BENCH_TTL``: seconds an ended stream stays readable (short, so a crashed run leaves little behind);
- ``BENCH_OBSERVE=1``: metrics and tracing on (``metrics=True`` on prometheus-client's default registry,
  ``tracing=`` an OpenTelemetry SDK ``TracerProvider`` whose ``BatchSpanProcessor`` hands every span to an
  exporter that counts and drops it: what an app pays, less its collector's network); ``metrics`` or
  ``tracing``: only that one (to tell their costs apart by hand). ``GET /bench/observed`` answers what
  they recorded, so a run can show that they were on.

With the Redis store, ``GET /bench/redis-calls`` answers what this process has sent to Redis, as one
flat mapping of counters:

- ``<command>`` (``hget``, ``hmget``, ``subscribe``, ...): the commands the store's client and its Pub/Sub
  connections send one by one, each a round trip;
- ``pipelines``: the store's pipelines of script calls (``ScriptCalls.pipelines``): one round trip each on
  a standalone Redis; on a cluster one per shard it touches, sent in parallel, counted in
  ``shard_pipelines``;
- ``script:<name>`` (``create``, ``append``, ``finish``, ``read``): the script calls inside those pipelines
  (``ScriptCalls.calls``); ``script:read`` is the store's read of a stream (the Lua read script).

Round trips are the ``<command>`` counters plus ``pipelines``. INFO commandstats counts the commands the
Lua scripts run as well, and cannot tell a client's ``HMGET`` from a script's.

Both streaming routes run the same generator: ``/plain`` through Litestar's own ``ServerSentEvent`` (the
baseline: no ids, no store, the generator runs in the request), ``/tee`` through ``@resumable``. Every
item is ``"<seq> <time.time() at yield> <padding>"``, so a client can measure the latency it added.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, get
from litestar.response import ServerSentEvent

from litestar_resumable import MemoryStreamStore, RedisStreamStore, ResumablePlugin, StreamStore, resumable

REDIS_CALLS: Counter[str] = Counter()
"""Commands sent one by one (each a round trip), and shard_pipelines (a cluster's pipelines, per shard)."""


def _count_calls(store: RedisStreamStore) -> None:
    """Count every command the store's client and its Pub/Sub send one by one (one Counter update per call),
    and on a cluster how many shards each pipeline of script calls goes to."""
    from redis.asyncio.client import PubSub  # noqa: PLC0415 - only with the Redis store

    client_execute = store.redis.execute_command
    pubsub_execute = PubSub.execute_command

    async def client_call(*args: Any, **options: Any) -> Any:
        REDIS_CALLS[str(args[0]).lower()] += 1
        return await client_execute(*args, **options)

    async def pubsub_call(self: PubSub, *args: Any) -> Any:
        REDIS_CALLS[str(args[0]).lower()] += 1
        return await pubsub_execute(self, *args)

    store.redis.execute_command = client_call  # type: ignore[method-assign]
    PubSub.execute_command = pubsub_call  # type: ignore[method-assign]
    if store.cluster:
        calls = store._calls  # noqa: SLF001 - the benchmarks read the store's own counters
        pipeline = calls._pipeline  # noqa: SLF001

        async def per_shard(batch: list[Any]) -> list[Any]:
            results = await pipeline(batch)
            try:
                nodes = {store.redis.get_node_from_key(call.keys[0]).name for call in batch}  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - a map of slots not yet loaded: count the pipeline once
                nodes = {None}
            REDIS_CALLS["shard_pipelines"] += len(nodes)
            return results

        calls._pipeline = per_shard  # type: ignore[method-assign] # noqa: SLF001


def redis_counters(store: RedisStreamStore) -> dict[str, int]:
    """The counters of ``GET /bench/redis-calls`` (see the module's docstring)."""
    calls = store._calls  # noqa: SLF001 - the benchmarks read the store's own counters
    counters = dict(REDIS_CALLS)
    counters["pipelines"] = calls.pipelines
    counters.update({f"script:{name}": count for name, count in calls.calls.items()})
    return counters


STORE: list[StreamStore] = []
SPANS: Counter[str] = Counter()
PROVIDERS: list[Any] = []


def _observe() -> dict[str, Any]:
    """The plugin's ``metrics=`` and ``tracing=`` with ``BENCH_OBSERVE=1``; none otherwise."""
    observe = os.environ.get("BENCH_OBSERVE")
    if observe == "metrics":
        return {"metrics": True}
    if observe not in {"1", "tracing"}:
        return {}
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415 - an observed server only
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Dropped(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            SPANS["exported"] += len(spans)
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Dropped()))
    PROVIDERS.append(provider)
    return {"metrics": observe == "1", "tracing": provider}


def _store() -> StreamStore:
    if os.environ.get("BENCH_STORE", "memory") == "redis":
        store = RedisStreamStore.from_url(
            os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
            cluster=os.environ.get("BENCH_REDIS_CLUSTER") == "1",
            key_prefix=os.environ.get("BENCH_KEY_PREFIX", "bench"),
            replicas=int(os.environ.get("BENCH_REPLICAS", "0")),
        )
        _count_calls(store)
        STORE.append(store)
        return store
    return MemoryStreamStore(max_bytes=1024 * 1024 * 1024)


async def items(
    n: int = 1000, rate: float = 0.0, size: int = 16, delay: float = 0.0, hold: float = 0.0
) -> AsyncIterator[str]:
    """``n`` items, ``rate`` a second (0: as fast as possible), after ``delay`` s; then quiet for ``hold`` s.

    A paced generator keeps to its schedule (as tokens arriving from a model would), so a server that falls
    behind shows as a lower delivered rate, not as a slower generator.
    """
    loop = asyncio.get_running_loop()
    pad = "x" * size
    if delay > 0:
        await asyncio.sleep(delay)
    interval = 1.0 / rate if rate > 0 else 0.0
    due = loop.time()
    for seq in range(n):
        if interval and seq:
            due += interval
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
        yield f"{seq} {time.time():.6f} {pad}"
    if hold > 0:
        await asyncio.sleep(hold)


@get("/pid", sync_to_thread=False)
def pid() -> int:
    """This process's id: the readiness check, and which process to measure."""
    return os.getpid()


@get("/noop", sync_to_thread=False)
def noop() -> str:
    """A trivial request, to check that the server answers in well under a millisecond (no Nagle stalls)."""
    return "ok"


@get("/bench/redis-calls", sync_to_thread=False)
def redis_calls() -> dict[str, int]:
    """What this process's store has sent to Redis so far: commands by name, pipelines, script calls."""
    if not STORE or not isinstance(STORE[0], RedisStreamStore):
        return {}
    return redis_counters(STORE[0])


@get("/bench/pool", sync_to_thread=False)
def pool() -> dict[str, Any]:
    """The Redis store's connection pool: connections in use, idle, and its cap."""
    if not STORE or not isinstance(STORE[0], RedisStreamStore):
        return {}
    if STORE[0].cluster:
        nodes = STORE[0].redis.get_nodes()  # type: ignore[union-attr]
        return {
            "class": "RedisCluster",
            "nodes": {
                node.name: {
                    "max_connections": node.max_connections,
                    "in_use": len(node._connections) - len(node._free),  # noqa: SLF001
                    "idle": len(node._free),  # noqa: SLF001
                }
                for node in nodes
            },
        }
    connections = STORE[0].redis.connection_pool
    return {
        "class": type(connections).__name__,
        "max_connections": getattr(connections, "max_connections", None),
        "in_use": len(getattr(connections, "_in_use_connections", ())),
        "idle": len(getattr(connections, "_available_connections", ())),
    }


@get("/bench/observed", sync_to_thread=False)
def observed() -> dict[str, float]:
    """With ``BENCH_OBSERVE=1``: events and generations the metrics counted, spans the tracer exported."""
    if not os.environ.get("BENCH_OBSERVE"):
        return {}
    from prometheus_client import REGISTRY  # noqa: PLC0415 - an observed server only

    for provider in PROVIDERS:
        provider.force_flush()  # the spans the batch processor holds: counted as exported
    totals: Counter[str] = Counter()
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if sample.name in {"resumable_events_total", "resumable_generations_ended_total"}:
                totals[sample.name] += sample.value
    return {**totals, "spans_exported": SPANS["exported"]}


@get("/plain")
async def plain(
    n: int = 1000, rate: float = 0.0, size: int = 16, delay: float = 0.0, hold: float = 0.0
) -> ServerSentEvent:
    """Litestar's plain Server-Sent Events over the generator: the baseline."""
    return ServerSentEvent(items(n, rate, size, delay, hold))


# The very same generator function, resumable (its query parameters are the generator's).
tee = get("/tee", name="tee")(resumable(items))


def _profiled() -> dict[str, Any]:
    """With ``BENCH_PYINSTRUMENT=<path>``: pyinstrument samples this process from startup to shutdown."""
    target = os.environ.get("BENCH_PYINSTRUMENT")
    if not target:
        return {}
    from pyinstrument import Profiler  # noqa: PLC0415 - a profiling run only

    profiler = Profiler(interval=0.0005, async_mode="disabled")

    def start() -> None:
        profiler.start()

    def stop() -> None:
        profiler.stop()
        with open(f"{target}.pyinstrument.txt", "w", encoding="utf-8") as text:  # noqa: PTH123
            text.write(profiler.output_text(unicode=True, show_all=False))
        profiler.write_html(f"{target}.pyinstrument.html")

    return {"on_startup": [start], "on_shutdown": [stop]}


# The scenarios go past some of the plugin's safety limits (100k events in a stream, 1000 readers of a
# stream per worker, 1 MiB events); raise those that this version of the plugin has.
_LIMITS = {"max_events": 10_000_000, "max_followers": 100_000, "max_event_bytes": 4 * 1024 * 1024}
try:
    from litestar_resumable import StreamOptions

    _OPTIONS = {field.name for field in dataclasses.fields(StreamOptions)}
except ImportError:  # an earlier version: its options were keyword parameters of the plugin
    _OPTIONS = set(inspect.signature(ResumablePlugin).parameters)
_limits = {k: v for k, v in _LIMITS.items() if k in _OPTIONS}

app = Litestar(
    [pid, noop, redis_calls, pool, observed, plain, tee],
    **_profiled(),
    plugins=[
        ResumablePlugin(
            _store(),
            ttl=float(os.environ.get("BENCH_TTL", "600")),
            shutdown_grace=1.0,
            **_limits,
            **_observe(),
        )
    ],
)
