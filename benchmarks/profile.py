"""Profile a server under one benchmark workload: ``python -m benchmarks.profile [options]``.

    python -m benchmarks.profile --store memory --workload concurrency --streams 500
    python -m benchmarks.profile --store redis --workload tee --chunks 100000 --tool pyinstrument
    python -m benchmarks.profile --store redis --cluster --replicas 1 --workload concurrency --streams 500

``--tool py-spy`` (default) samples the uvicorn process from outside (``py-spy record``, raw collapsed
stacks) and prints where the time goes: by package, by function (self and total) and the library's own
functions. ``--tool pyinstrument`` runs pyinstrument inside the server (``BENCH_PYINSTRUMENT``) and
writes its text and HTML reports. ``--cluster`` runs the Redis store on a local Redis Cluster of its own
(3 masters, 1 replica each; ``--replicas`` is the store's ``replicas``). Output goes to
``benchmarks/results/profiles/`` (not kept in git).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.cluster import cluster_class
from benchmarks.harness import (
    BENCH_DIR,
    Server,
    ServerConfig,
    redis_probe,
    run_clients,
    running,
    stream,
    stream_problems,
)
from benchmarks.scenarios import start_producer

PROFILES = BENCH_DIR / "results" / "profiles"
_FRAME = re.compile(r"^(?P<function>.*?) \((?P<file>[^:]*)(?::(?P<line>\d+))?\)$")


def _package(path: str, function: str) -> str:
    if function.startswith("Runner.run "):
        return "event loop internals (uvloop's C code: I/O, callbacks)"
    for name in (
        "litestar_resumable",
        "litestar",
        "uvicorn",
        "httptools",
        "redis",
        "msgspec",
        "benchmarks",
        "asyncio",
    ):
        if path.startswith(f"{name}/") or f"/{name}/" in path:
            return name
    return "python/other"


def summarize(raw: Path, top: int = 25) -> str:
    """Where the samples of a py-spy raw (collapsed) profile went."""
    self_time: collections.Counter[str] = collections.Counter()
    total_time: collections.Counter[str] = collections.Counter()
    by_package: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        names = []
        for frame in frames:
            match = _FRAME.match(frame)
            names.append(
                (f"{match['function']} ({Path(match['file']).name})", match["file"])
                if match
                else (frame, frame)
            )
        leaf_name, leaf_file = names[-1]
        self_time[leaf_name] += count
        by_package[_package(leaf_file, leaf_name)] += count
        for name in {n for n, _ in names}:
            total_time[name] += count
    if not samples:
        return "no samples"
    out = [f"{samples} samples", "", "self time by package:"]
    out += [f"  {100 * c / samples:5.1f}%  {name}" for name, c in by_package.most_common()]
    out += ["", f"self time, top {top}:"]
    out += [f"  {100 * c / samples:5.1f}%  {name}" for name, c in self_time.most_common(top)]
    out += ["", f"total time (function and what it calls), top {top}:"]
    out += [f"  {100 * c / samples:5.1f}%  {name}" for name, c in total_time.most_common(top)]
    return "\n".join(out)


async def _workload(args: argparse.Namespace, server: Server) -> None:
    if args.workload == "tee":
        await run_clients([stream(server.port, f"/tee?n={args.chunks}")], deadline=time.time() + 300)
    elif args.workload == "concurrency":
        rate = args.rate
        chunks = int(rate * args.seconds) + 1
        t0 = time.time() + 0.5
        streams = [
            stream(
                server.port, f"/tee?n={chunks}&rate={rate}", start_at=t0 + args.ramp * i / args.streams, tag=i
            )
            for i in range(args.streams)
        ]
        result = await run_clients(streams, processes=2, deadline=t0 + args.ramp + chunks / rate + 10)
        problems = stream_problems(result["streams"], chunks)
        print(f"{len(problems)} of {args.streams} streams incomplete: {problems[:3]}")
    elif args.workload == "fanout":
        chunks = int(20 * args.seconds)
        producer, stream_id = await start_producer(
            stream(server.port, f"/tee?n={chunks}&rate=20&delay=2"), deadline=time.time() + args.seconds + 30
        )
        viewers = [
            stream(server.port, f"/resumable/streams/{stream_id}", tag=i) for i in range(args.streams - 1)
        ]
        await run_clients(viewers, processes=2, deadline=time.time() + args.seconds + 30)
        await producer


def _start_py_spy(pid: int, raw: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        raise SystemExit("py-spy is not installed: pip install -r benchmarks/requirements.txt")
    command = [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--output", str(raw)]
    return subprocess.Popen([*command, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def main_async(args: argparse.Namespace) -> None:
    if not args.cluster:
        await _profile(args, {})
        return
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as root:
        cluster = cluster_class()(Path(root))
        cluster.start()
        try:
            env = {
                "BENCH_REDIS_URL": cluster.url,
                "BENCH_REDIS_CLUSTER": "1",
                "BENCH_REPLICAS": str(args.replicas),
            }
            await _profile(args, env)
        finally:
            cluster.stop()


async def _profile(args: argparse.Namespace, extra: dict[str, str]) -> None:
    PROFILES.mkdir(parents=True, exist_ok=True)
    name = f"{args.store}-{args.workload}-{args.streams if args.workload != 'tee' else args.chunks}"
    if extra:
        name += f"-cluster-replicas{args.replicas}"
    prefix = f"bench-profile-{uuid.uuid4().hex[:8]}"
    env = {"BENCH_STORE": args.store, "BENCH_KEY_PREFIX": prefix, **extra}
    if args.observe:
        env["BENCH_OBSERVE"] = "1"
        name += "-observed"
    if args.tool == "pyinstrument":
        env["BENCH_PYINSTRUMENT"] = str(PROFILES / name)
    server = Server("profiled", env=env, config=ServerConfig(http=args.http, loop=args.loop))
    async with redis_probe("redis://127.0.0.1:6379/0") as probe:
        try:
            with running([server]):
                spy = None
                raw = PROFILES / f"{name}.py-spy.txt"
                if args.tool == "py-spy":
                    spy = _start_py_spy(server.pid, raw)
                    await asyncio.sleep(1.0)
                await _workload(args, server)
                if spy is not None:
                    spy.send_signal(2)  # SIGINT: py-spy writes what it has
                    spy.wait(30)
        finally:
            await probe.delete_prefix(prefix)
    if args.tool == "py-spy":
        summary = summarize(raw)
        (PROFILES / f"{name}.py-spy.summary.txt").write_text(summary + "\n", encoding="utf-8")
        print(summary)
        print(f"\nraw stacks: {raw}")
    else:
        print((PROFILES / f"{name}.pyinstrument.txt").read_text(encoding="utf-8"))
        print(f"\nHTML: {PROFILES / name}.pyinstrument.html")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=["memory", "redis"], default="memory")
    parser.add_argument("--workload", choices=["tee", "concurrency", "fanout"], default="concurrency")
    parser.add_argument("--streams", type=int, default=500, help="streams (concurrency) or viewers (fanout)")
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks of the tee workload")
    parser.add_argument("--seconds", type=float, default=6.0, help="how long each stream lasts")
    parser.add_argument("--rate", type=float, default=20.0, help="chunks/s of each stream (concurrency)")
    parser.add_argument(
        "--ramp", type=float, default=1.0, help="seconds over which streams start (concurrency)"
    )
    parser.add_argument("--tool", choices=["py-spy", "pyinstrument"], default="py-spy")
    parser.add_argument("--cluster", action="store_true", help="the Redis store on a local Redis Cluster")
    parser.add_argument("--replicas", type=int, default=0, help="the store's replicas (with --cluster)")
    parser.add_argument("--observe", action="store_true", help="metrics and tracing on (BENCH_OBSERVE=1)")
    parser.add_argument("--http", default="httptools")
    parser.add_argument("--loop", default="uvloop")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
