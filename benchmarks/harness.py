"""Processes and probes: the servers under test, the load generator processes, and what Redis says.

Servers are separate processes (uvicorn for the Litestar app, Node for the peer), started with fixed
arguments and stopped at the end of each scenario. Each is checked right after it answers: a trivial
request on a kept-alive connection must take well under a millisecond, which shows that no Nagle /
delayed-ACK stall (about 40 ms a request on Linux) is in the way of small writes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from redis.asyncio import Redis

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "benchmarks"
PEER_DIR = BENCH_DIR / "peer"
READY_TIMEOUT = 30.0
NAGLE_SUSPECT_MS = 20.0
REDIS_SERVER = "redis-server"  # the Redis server's own CPU, next to the servers' names in CPU samples


class BenchmarkError(RuntimeError):
    """The benchmark could not run as intended (a server did not start, a client failed)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerConfig:
    """How uvicorn runs the app: ``uvicorn[standard]``'s defaults (httptools, uvloop) unless told."""

    http: str = "httptools"
    loop: str = "uvloop"


@dataclass
class Server:
    """One server process: ``kind`` is ``uvicorn`` (``benchmarks.app:app``) or ``node`` (the peer)."""

    name: str
    kind: str = "uvicorn"
    env: dict[str, str] = field(default_factory=dict)
    config: ServerConfig = field(default_factory=ServerConfig)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    trivial_request_ms: float | None = None
    log_summary: dict[str, Any] = field(default_factory=dict)
    _log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchmarkError(f"{self.name} is not started")
        return self.process.pid

    def command(self) -> list[str]:
        if self.kind == "node":
            return ["node", str(PEER_DIR / "server.mjs"), "--port", str(self.port)]
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.app:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--http",
            self.config.http,
            "--loop",
            self.config.loop,
            "--ws",
            "none",
            "--lifespan",
            "on",
            "--log-level",
            "warning",
            "--no-access-log",
            "--backlog",
            "4096",
        ]

    def start(self) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
        self._log = tempfile.NamedTemporaryFile(prefix=f"bench-{self.name}-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return "" if self._log is None else Path(self._log.name).read_text(encoding="utf-8", errors="replace")

    def wait_ready(self) -> None:
        if self.process is None:
            raise BenchmarkError(f"{self.name} is not started")
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise BenchmarkError(f"{self.name} exited with {self.process.returncode}:\n{self.output()}")
            with contextlib.suppress(OSError, ValueError):
                status, body = http_request(self.port, "GET", "/pid", timeout=1.0)
                if status == 200 and int(body) == self.pid:  # noqa: PLR2004
                    break
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{self.name} did not answer within {READY_TIMEOUT} s:\n{self.output()}")
            time.sleep(0.05)
        self.trivial_request_ms = trivial_request_ms(self.port)
        if self.trivial_request_ms > NAGLE_SUSPECT_MS:
            raise BenchmarkError(
                f"{self.name}: a trivial request takes {self.trivial_request_ms:.1f} ms; that is the Nagle / "
                "delayed-ACK stall (TCP_NODELAY not in effect), which would distort every latency measured"
            )

    def stop(self) -> None:
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
        finally:
            if self._log is not None:
                self.log_summary = summarize_log(self.output())
                self._log.close()
                self._log = None

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def rss_mib(self) -> float:
        return float(psutil.Process(self.pid).memory_info().rss) / 2**20

    def local_ports_by_remote(self, ports: set[int]) -> dict[int, set[int]]:
        """This process's local ports of its TCP connections to each of ``ports`` (Redis nodes, say)."""
        found: dict[int, set[int]] = {port: set() for port in ports}
        for conn in psutil.Process(self.pid).net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port in found:
                found[conn.raddr.port].add(conn.laddr.port)
        return found

    def local_ports_to(self, port: int) -> set[int]:
        """This process's local ports of its TCP connections to ``port`` (Redis, say)."""
        return {
            conn.laddr.port
            for conn in psutil.Process(self.pid).net_connections(kind="tcp")
            if conn.raddr and conn.raddr.port == port
        }


_LEVEL = re.compile(
    r"^(WARNING|ERROR|CRITICAL) - \S+ \S+ - (?P<logger>\S+) - (?P<module>\S+) - (?P<message>.*)$"
)
_EXCEPTION = re.compile(r"^(?P<name>[A-Za-z_][\w.]*(Error|Exception|Exceeded|Timeout)\w*)(:|$)")
_IDS = re.compile(r"\{[^}]*\}|\b[\w-]{22,}\b|\d+(\.\d+)?")


def summarize_log(text: str) -> dict[str, Any]:
    """A server's warnings, errors and the exceptions in its tracebacks, counted by kind (ids and numbers
    blanked out): what went wrong in it, which the harness keeps after the log file is gone."""
    warnings: collections.Counter[str] = collections.Counter()
    exceptions: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        if match := _LEVEL.match(line):
            warnings[_IDS.sub("#", f"{match['module'].strip()}: {match['message'].strip()}")[:160]] += 1
        elif match := _EXCEPTION.match(line):
            exceptions[match["name"]] += 1
    if not warnings and not exceptions:
        return {}
    return {"warnings": dict(warnings.most_common(10)), "exceptions": dict(exceptions.most_common(10))}


@contextlib.contextmanager
def running(servers: Sequence[Server]) -> Iterator[Sequence[Server]]:
    """Start the servers together, wait for each, and stop them all whatever happens."""
    try:
        for server in servers:
            server.start()
        for server in servers:
            server.wait_ready()
        yield servers
    finally:
        for server in servers:
            server.stop()


def http_request(port: int, method: str, path: str, *, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on a new connection, with ``Connection: close`` (for control calls, not for load)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk_all(body)
    return status, body


def _dechunk_all(body: bytes) -> bytes:
    out = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        body = rest[size + 2 :]
    return b"".join(out)


def trivial_request_ms(port: int, count: int = 50) -> float:
    """Median time of a trivial GET on one kept-alive connection (a client with TCP_NODELAY, as browsers)."""
    request = b"GET /noop HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    times = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count + 5):
            started = time.perf_counter()
            sock.sendall(request)
            data = b""
            while not (data.endswith((b"ok", b"\r\n0\r\n\r\n"))) or b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    raise BenchmarkError("the server closed a kept-alive connection")
                data += chunk
            times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times[5:])


def background_load(seconds: float = 1.0) -> dict[str, Any]:
    """What the rest of the machine is doing: whole-machine CPU busy, and the busiest other processes."""
    processes = list(psutil.process_iter(["pid", "name", "cmdline"]))
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.cpu_percent(None)
    busy = psutil.cpu_percent(interval=seconds)
    top = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            used = process.cpu_percent(None)
            if used >= 5.0 and process.pid != os.getpid():  # noqa: PLR2004
                command = " ".join(process.info["cmdline"] or [process.info["name"] or "?"])[:80]
                top.append({"pid": process.pid, "cpu_pct": used, "command": command})
    return {"cpu_busy_pct": busy, "load_avg_1m": os.getloadavg()[0], "busy_processes": top}


class OtherLoad:
    """CPU the rest of the machine used while the run ran: the machine's busy CPU time, less this process's
    and its children's (servers, load generators, cluster nodes: each waited for when it ends) and the
    shared Redis server's (``INFO cpu``)."""

    def __init__(self) -> None:
        self._start = self._sample_local()
        self._redis_start = 0.0
        self._t0 = time.monotonic()

    @staticmethod
    def _sample_local() -> tuple[float, float]:
        machine = psutil.cpu_times()
        busy = machine.user + machine.system + getattr(machine, "nice", 0.0) + getattr(machine, "irq", 0.0)
        busy += getattr(machine, "softirq", 0.0) + getattr(machine, "steal", 0.0)
        ours = os.times()
        return busy, ours.user + ours.system + ours.children_user + ours.children_system

    async def start(self, redis: RedisProbe) -> None:
        self._redis_start = await redis.cpu_seconds()

    async def stop(self, redis: RedisProbe) -> dict[str, float]:
        busy, ours = self._sample_local()
        used_by_redis = await redis.cpu_seconds() - self._redis_start
        wall = time.monotonic() - self._t0
        others = (busy - self._start[0]) - (ours - self._start[1]) - used_by_redis
        cores = os.cpu_count() or 1
        return {
            "cpu_s": round(max(0.0, others), 1),
            "share_of_machine_pct": round(100.0 * max(0.0, others) / (wall * cores), 1),
        }


# -- load generator processes --


async def run_loadgen(
    spec: Mapping[str, Any], on_line: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run one load generator process on ``spec``; ``on_line`` gets its progress lines as they come."""
    with tempfile.NamedTemporaryFile(prefix="bench-loadgen-", suffix=".json") as output:
        result = await _run_loadgen({**spec, "output": output.name}, on_line)
        if "output" in result:
            result = json.loads(await asyncio.to_thread(Path(output.name).read_text, encoding="utf-8"))
    return result


async def _run_loadgen(
    spec: Mapping[str, Any], on_line: Callable[[dict[str, Any]], None] | None
) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=256 * 1024 * 1024,
    )
    if process.stdin is None or process.stdout is None or process.stderr is None:  # pragma: no cover
        raise BenchmarkError("the load generator's pipes are missing")
    process.stdin.write(json.dumps(spec).encode())
    process.stdin.close()
    result: dict[str, Any] | None = None
    stderr_task = asyncio.create_task(process.stderr.read())
    while line := await process.stdout.readline():
        message = json.loads(line)
        if message.get("type") == "result":
            result = message
        elif on_line is not None:
            on_line(message)
    await process.wait()
    errors = (await stderr_task).decode(errors="replace")
    if process.returncode != 0 or result is None:
        raise BenchmarkError(f"load generator failed ({process.returncode}):\n{errors}")
    return result


def split(items: Sequence[Any], parts: int) -> list[list[Any]]:
    """``items`` dealt round-robin into ``parts`` lists (none empty unless there are fewer items)."""
    parts = max(1, min(parts, len(items)))
    return [list(items[i::parts]) for i in range(parts)]


async def run_clients(
    streams: Sequence[Mapping[str, Any]],
    *,
    processes: int = 1,
    window: tuple[float, float] | None = None,
    latency: bool = False,
    deadline: float,
    on_line: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Read ``streams`` from ``processes`` load generator processes; merge what they measured."""
    specs = [
        {"streams": part, "window": window, "latency": latency, "deadline": deadline}
        for part in split(streams, processes)
    ]
    results = await asyncio.gather(*(run_loadgen(spec, on_line) for spec in specs))
    merged: dict[str, Any] = {
        "processes": len(results),
        "streams": [s for r in results for s in r["streams"]],
        "latencies_ms": [x for r in results for x in r["latencies_ms"]],
        "events_in_window": sum(r["events_in_window"] for r in results),
        "cpu_total_s": sum(r["cpu_total_s"] for r in results),
        "cpu_window_s": (
            sum(r["cpu_window_s"] for r in results)
            if all(r["cpu_window_s"] is not None for r in results)
            else None
        ),
    }
    return merged


def stream(port: int, path: str, **extra: Any) -> dict[str, Any]:
    return {"port": port, "path": path, **extra}


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100.0 * len(ordered)) - 1))
    return ordered[rank]


def stream_problems(streams: Sequence[Mapping[str, Any]], expected_events: int | None = None) -> list[str]:
    """What went wrong with the streams a load generator read: errors, gaps, missing events."""
    problems = []
    for s in streams:
        if s["error"]:
            problems.append(f"{s['tag']}: {s['error']}")
        elif s["out_of_order"]:
            problems.append(f"{s['tag']}: {s['out_of_order']} events out of order")
        elif expected_events is not None and s["events"] < expected_events:
            problems.append(f"{s['tag']}: {s['events']} of {expected_events} events")
    return problems


# -- CPU sampling --


class CpuWindow:
    """CPU seconds of some processes (servers, Redis) between two moments."""

    def __init__(self, servers: Sequence[Server], redis: RedisProbe | None = None) -> None:
        self.servers = servers
        self.redis = redis
        self._start: dict[str, float] = {}
        self._end: dict[str, float] = {}
        self._t0 = 0.0
        self._t1 = 0.0

    async def _sample(self) -> dict[str, float]:
        sample = {server.name: server.cpu_seconds() for server in self.servers}
        if self.redis is not None:
            sample[REDIS_SERVER] = await self.redis.cpu_seconds()
        return sample

    async def start(self) -> None:
        self._t0 = time.time()
        self._start = await self._sample()

    async def stop(self) -> None:
        self._t1 = time.time()
        self._end = await self._sample()

    async def between(self, t0: float, t1: float) -> None:
        await asyncio.sleep(max(0.0, t0 - time.time()))
        await self.start()
        await asyncio.sleep(max(0.0, t1 - time.time()))
        await self.stop()

    def percent(self) -> dict[str, float]:
        """Percent of one core used by each process over the window."""
        wall = self._t1 - self._t0
        return {name: round(100.0 * (self._end[name] - self._start[name]) / wall, 1) for name in self._start}


# -- Redis --


class RedisProbe:
    """What the Redis server says about itself: command counts, CPU, memory of keys, clients."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.redis = Redis.from_url(url)
        self.port = self.redis.connection_pool.connection_kwargs.get("port", 6379)

    async def close(self) -> None:
        await self.redis.aclose()

    async def version(self) -> str:
        info = await self.redis.info("server")
        return str(info["redis_version"])

    async def commandstats(self) -> dict[str, int]:
        stats = await self.redis.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}

    async def cpu_seconds(self) -> float:
        info = await self.redis.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    async def keys(self, prefix: str) -> list[bytes]:
        return [key async for key in self.redis.scan_iter(match=f"{prefix}*", count=1000)]

    async def memory_usage(self, keys: Sequence[bytes | str]) -> dict[str, int]:
        sizes = {}
        for key in keys:
            usage = await self.redis.memory_usage(key, samples=0)
            name = key.decode() if isinstance(key, bytes) else key
            sizes[name] = int(usage or 0)
        return sizes

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self.keys(prefix)
        for start in range(0, len(keys), 1000):
            await self.redis.delete(*keys[start : start + 1000])
        return len(keys)

    async def clients_of(self, servers: Sequence[Server]) -> dict[str, int]:
        """How many Redis connections each server process has open, from CLIENT LIST (matched by port)."""
        clients = await self.redis.client_list()
        ports = {server.name: server.local_ports_to(int(self.port)) for server in servers}
        counts = dict.fromkeys(ports, 0)
        for client in clients:
            port = int(str(client["addr"]).rsplit(":", 1)[1])
            for name, owned in ports.items():
                if port in owned:
                    counts[name] += 1
        return counts


class CommandCounter:
    """Redis commands called between ``start`` and ``stop``: INFO commandstats deltas (less INFO itself)."""

    def __init__(self, probe: RedisProbe) -> None:
        self.probe = probe
        self.before: dict[str, int] = {}
        self.delta: dict[str, int] = {}

    async def start(self) -> None:
        self.before = await self.probe.commandstats()

    async def stop(self) -> dict[str, int]:
        after = await self.probe.commandstats()
        delta = {name: calls - self.before.get(name, 0) for name, calls in after.items()}
        self.delta = {
            name: calls
            for name, calls in sorted(delta.items())
            if calls > 0 and name not in {"info", "client|list"}
        }
        return self.delta


# Commands a client sends itself (each one a round trip, or part of a pipeline); the rest run inside Lua.
ROUND_TRIP_COMMANDS = {
    "evalsha",
    "eval",
    "xrange",
    "xread",
    "hmget",
    "hget",
    "get",
    "set",
    "incr",
    "publish",
    "subscribe",
    "unsubscribe",
    "ping",
    "script|load",
    "hello",
    "client|setinfo",
    "client|setname",
    "select",
}


@contextlib.asynccontextmanager
async def redis_probe(url: str) -> AsyncIterator[RedisProbe]:
    probe = RedisProbe(url)
    try:
        yield probe
    finally:
        await probe.close()
