"""``python -m benchmarks [--quick] [--only NAME ...]``: run the scenarios, write benchmarks/results/.

Writes ``results.json`` (everything measured), ``results.md`` (the tables, the goals) and ``results.png``
(the plots) into the output folder, and prints the tables. Needs a Redis (``REDIS_URL``, default
``redis://127.0.0.1:6379/0``): it writes only keys under a prefix of its own and deletes them afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from benchmarks import cluster, observability, readme, report, scaling
from benchmarks.harness import BENCH_DIR, ROOT, OtherLoad, ServerConfig, background_load, redis_probe
from benchmarks.scenarios import FULL, QUICK, Context, Params, PeerStatus, prepare_peer
from benchmarks.scenarios import SCENARIOS as STANDALONE

SCENARIOS = {
    **STANDALONE,
    "cluster": cluster.cluster,
    "rehearsal": cluster.rehearsal,
    "observability": observability.observability,
}

DEFAULT_OUT = BENCH_DIR / "results"


def log(message: str) -> None:
    print(message, flush=True)


def _command(*args: str) -> str:
    if shutil.which(args[0]) is None:
        return ""
    return subprocess.run(args, capture_output=True, text=True, check=False).stdout.strip()


def machine() -> dict[str, Any]:
    cpu_model = ""
    with Path("/proc/cpuinfo").open(encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    packages = {}
    for name in ("litestar", "litestar-resumable", "redis", "uvicorn", "httptools", "uvloop", "msgspec"):
        try:
            packages[name] = version(name)
        except Exception:  # noqa: BLE001 - an optional package that is not installed
            packages[name] = "not installed"
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory": _command("free", "-h").splitlines()[1].split()[1] if _command("free", "-h") else "",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": packages,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    params = dataclasses.replace(QUICK if args.quick else FULL, **dict(args.set or []))
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    chosen = args.only or list(SCENARIOS)
    background = background_load()
    if background["cpu_busy_pct"] > 10:  # noqa: PLR2004
        log(f"warning: the machine is busy before the run ({background}); results will be noisy")
    peer = PeerStatus(available=False, reason="skipped with --no-peer") if args.no_peer else prepare_peer(log)
    if not peer.available:
        log(f"peer: {peer.reason}")
    other_load = OtherLoad()
    async with redis_probe(redis_url) as probe:
        await other_load.start(probe)
        ctx = Context(
            params=params,
            redis_url=redis_url,
            probe=probe,
            server_config=ServerConfig(http=args.http, loop=args.loop),
            peer=peer,
            log=log,
            variants=tuple(args.variants),
        )
        results: dict[str, Any] = {
            "meta": {
                "mode": "quick" if args.quick else "full",
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
                "machine": {**machine(), "redis": await probe.version(), "peer": peer.versions},
                "server": {"http": args.http, "loop": args.loop, "workers": 1},
                "peer": {"available": peer.available, "reason": peer.reason},
                "params": params.__dict__,
                "run_id": ctx.run_id,
                "background_at_start": background,
            }
        }
        for name in chosen:
            log(f"== {name}")
            began = time.monotonic()
            try:
                results[name] = await SCENARIOS[name](ctx)
            except Exception as exc:
                log(f"   {name} failed: {exc!r}")
                results[name] = {"error": repr(exc)}
                if args.fail_fast:
                    raise
            results[name]["seconds"] = round(time.monotonic() - began, 1)
            log(f"   {name}: {results[name]['seconds']} s")
        results["meta"]["trivial_request_ms"] = ctx.trivial_request_ms
        results["meta"]["server_logs"] = ctx.server_logs
        results["meta"]["leftover_keys_deleted"] = await probe.delete_prefix(f"bench-{ctx.run_id}")
        results["meta"]["other_load_during_run"] = await other_load.stop(probe)
    results["meta"]["background_at_end"] = background_load()
    results["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    results["goals"] = report.goals(results)
    return results


def _merged(path: Path, run: dict[str, Any], scenarios: list[str]) -> dict[str, Any]:
    """The results at ``path`` with ``scenarios`` replaced by this run's; each keeps its own run's start
    and the other processes' share of the machine during it, and the goals are computed again."""
    results: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    for name in scenarios:
        results[name] = {
            **run[name],
            "measured_at": run[name].get("measured_at", run["meta"]["started"]),
            "other_load_pct": run["meta"]["other_load_during_run"]["share_of_machine_pct"],
        }
    results["meta"].setdefault("merged", []).append(
        {"scenarios": scenarios, "started": run["meta"]["started"], "duration_s": run["meta"]["duration_s"]}
    )
    results["goals"] = report.goals(results)
    return results


def _setting(text: str) -> tuple[str, Any]:
    name, _, value = text.partition("=")
    if name not in Params.__dataclass_fields__:
        raise argparse.ArgumentTypeError(f"unknown setting {name!r}; see Params in benchmarks/scenarios.py")
    return name, json.loads(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small sizes (6-7 minutes on 2 cores)")
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--no-peer", action="store_true", help="skip the resumable-stream peer")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["plain", "memory", "redis", "peer"],
        choices=["plain", "memory", "redis", "peer"],
        help="run only these variants (the goals need all of them)",
    )
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where results go (default: %(default)s)"
    )
    parser.add_argument("--http", default="httptools", choices=["httptools", "h11"], help="uvicorn's --http")
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"], help="uvicorn's --loop")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failing scenario")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="replace only these scenarios (--only) in the results already in --out, and keep the rest",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        type=_setting,
        metavar="NAME=JSON",
        help="override a size of the mode, e.g. --set conc_counts=[300] conc_window=5 (see Params)",
    )
    args = parser.parse_args(argv)
    results = asyncio.run(main_async(args))
    took = results["meta"]["duration_s"]
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        results = _merged(args.out / "results.json", results, args.only or list(SCENARIOS))
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    markdown = report.markdown(results)
    (args.out / "results.md").write_text(markdown, encoding="utf-8")
    report.plot(results, args.out / "results.png")
    print(markdown)
    print(f"wrote {args.out}/results.json, results.md, results.png; this run took {took} s")
    if args.out.resolve() == DEFAULT_OUT.resolve():
        readme.update(ROOT / "README.md", results)
        scaling.update(ROOT / "docs" / "scaling.md", results)
        observability.update(ROOT / "docs" / "observability.md", results)
        print("updated README.md's performance table, docs/scaling.md's and docs/observability.md's figures")
    sys.exit(0)
