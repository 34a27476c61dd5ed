"""The results as a markdown page (tables and goals) and as a PNG of plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks import observability
from benchmarks.harness import REDIS_SERVER
from benchmarks.scenarios import VARIANTS

GOAL_TEE_RATIO = 0.9
GOAL_P99_MS = 10.0
GOAL_P99_STREAMS = 500
GOAL_ROUND_TRIPS = 0.1
GOAL_CATCH_UP_RATIO = 1.3
GOAL_CATCH_UP_BACKLOG = 10_000
GOAL_LARGE_GROWTH_MIB = 64.0
GOAL_DELIVERED_STREAMS = 1000
GOAL_DELIVERED_PER_S = 19_000
GOAL_FAN_VIEWERS = 500
GOAL_FAN_ROUND_TRIPS = 2.0
REHEARSAL_DELIVERED = 0.99  # "holds": at least this share of the offered chunks delivered in the window
FANOUT_FLAT = 1.25  # "independent of viewers": the most reads per chunk within 25% of the least
BUSY_PCT = 10.0
OTHERS_PCT = 5.0  # other processes' share of the machine during the run above which the numbers are noisy
TIMES = "\u00d7"  # the multiplication sign
DASH = "\u2013"  # an en dash: no value
GE, LE = "\u2265", "\u2264"


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return DASH
    if isinstance(value, float):
        if abs(value) >= 1000:  # noqa: PLR2004
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _goal(goal: str, measured: str, *, met: bool | None, note: str = "") -> dict[str, Any]:
    return {"goal": goal, "measured": measured, "met": met, "note": note}


# -- goals --


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each goal of the issue, with what this run measured (reported, never asserted)."""
    return [
        *_large_goal(results),
        *_tee_goal(results),
        *_latency_goals(results),
        *_delivered_goal(results),
        *_round_trip_goal(results),
        *_catch_up_goals(results),
        *_fanout_goal(results),
        *_fan_round_trip_goals(results),
        *_peer_goals(results),
        *_cluster_goals(results),
        *_rehearsal_goal(results),
        *(_goal(goal, measured, met=met) for goal, measured, met in observability.goals(results)),
    ]


def _large_goal(results: dict[str, Any]) -> list[dict[str, Any]]:
    large = results.get("large", {})
    redis = large.get("variants", {}).get("redis")
    if not redis:
        return []
    size = f"{large['items']} items of {large['item_bytes'] / 2**20:g} MiB"
    goal = f"peak RSS growth {LE} {GOAL_LARGE_GROWTH_MIB:.0f} MiB, fast generator of {size} (Redis store)"
    measured = f"{_fmt(redis['peak_growth_mib'], 1)} MiB above {_fmt(redis['idle_rss_mib'], 1)} MiB idle"
    growth = redis["peak_growth_mib"]
    return [_goal(goal, measured, met=growth is not None and growth <= GOAL_LARGE_GROWTH_MIB)]


def _tee_goal(results: dict[str, Any]) -> list[dict[str, Any]]:
    variants = results.get("tee", {}).get("variants", {})
    if "redis" not in variants or "plain" not in variants:
        return []
    ratio = variants["redis"]["ratio_to_plain"]
    measured = (
        f"{ratio}{TIMES} ({_fmt(variants['redis']['events_per_s'])} vs "
        f"{_fmt(variants['plain']['events_per_s'])} events/s)"
    )
    goal = f"Redis-store tee throughput {GE} {GOAL_TEE_RATIO}{TIMES} plain SSE"
    return [_goal(goal, measured, met=ratio is not None and ratio >= GOAL_TEE_RATIO)]


def _latency_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    points = results.get("concurrency", {}).get("points", [])
    for variant in ("memory", "redis"):
        mine = [p for p in points if p["variant"] == variant]
        if not mine:
            continue
        point = min(mine, key=lambda p: abs(p["streams"] - GOAL_P99_STREAMS))
        p99 = point["p99_ms"]
        goal = (
            f"p99 added latency {LE} {GOAL_P99_MS:.0f} ms at {GOAL_P99_STREAMS} streams {TIMES} 20 chunks/s "
            f"({variant})"
        )
        measured = (
            f"{_fmt(p99)} ms at {point['streams']} streams "
            f"({_fmt(point['delivered_per_s'])} of {_fmt(point['offered_per_s'])} chunks/s delivered)"
        )
        out.append(_goal(goal, measured, met=p99 is not None and p99 <= GOAL_P99_MS))
    return out


def _delivered_goal(results: dict[str, Any]) -> list[dict[str, Any]]:
    points = [
        p
        for p in results.get("concurrency", {}).get("points", [])
        if p["variant"] == "redis" and p["streams"] == GOAL_DELIVERED_STREAMS
    ]
    if not points:
        return []
    point = points[0]
    goal = (
        f"{_fmt(GOAL_DELIVERED_STREAMS)} streams {TIMES} 20 chunks/s deliver "
        f"{GE} {_fmt(GOAL_DELIVERED_PER_S)} chunks/s (Redis store, one process)"
    )
    measured = (
        f"{_fmt(point['delivered_per_s'])} of {_fmt(point['offered_per_s'])} chunks/s, "
        f"p99 {_fmt(point['p99_ms'])} ms, server CPU {_fmt(point['server_cpu_pct'], 0)}%"
    )
    return [_goal(goal, measured, met=point["delivered_per_s"] >= GOAL_DELIVERED_PER_S)]


def trips_text(trips: dict[str, Any]) -> str:
    """Where round trips come from: ``pipelines (carrying script calls) + commands``, of ``round_trips``."""
    scripts = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(trips["scripts"].items()))
    commands = " + ".join(f"{_fmt(v)} {k.upper()}" for k, v in sorted(trips["commands"].items()))
    text = f"{_fmt(trips['pipelines'])} pipelines ({scripts or 'no script calls'})"
    return f"{text} + {commands}" if commands else text


def _round_trip_goal(results: dict[str, Any]) -> list[dict[str, Any]]:
    fast = results.get("redis_cost", {}).get("fast")
    if not fast:
        return []
    per_chunk = fast["round_trips_per_chunk"]
    trips = fast["round_trips"]
    measured = (
        f"{per_chunk} ({_fmt(trips['round_trips'])} for {_fmt(fast['chunks'])} chunks: {trips_text(trips)})"
    )
    goal = f"{LE} {GOAL_ROUND_TRIPS} Redis round trips per chunk for a fast generator"
    return [_goal(goal, measured, met=per_chunk <= GOAL_ROUND_TRIPS)]


def _catch_up_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for row in results.get("resume", {}).get("rows", []):
        if row["backlog"] != GOAL_CATCH_UP_BACKLOG or row["variant"] not in ("memory", "redis"):
            continue
        for where, ratio in row["catch_up_over_live"].items():
            goal = (
                f"catch-up of 10k events {LE} {GOAL_CATCH_UP_RATIO}{TIMES} a live read "
                f"({row['variant']}, {where})"
            )
            measured = (
                f"{ratio}{TIMES} ({_fmt(row['catch_up_s'][where], 3)} s vs {_fmt(row['live_s'], 3)} s live)"
            )
            out.append(_goal(goal, measured, met=ratio is not None and ratio <= GOAL_CATCH_UP_RATIO))
    return out


def _fanout_goal(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [
        r
        for r in results.get("fanout", {}).get("rows", [])
        if r["variant"] == "redis" and r["viewers"] > 1 and r.get("reads_per_chunk") is not None
    ]
    if not rows:
        return []
    values = [r["reads_per_chunk"] for r in rows]
    flat = max(values) <= FANOUT_FLAT * max(min(values), 1e-9)
    measured = (
        ", ".join(f"{r['viewers']} viewers: {r['reads_per_chunk']}" for r in rows)
        + " read-script calls per chunk (both processes together)"
    )
    note = "two processes, viewers split evenly; with 1 viewer the second process has no reader"
    return [_goal("Redis reads per chunk independent of viewers per process", measured, met=flat, note=note)]


def fan_trips_text(row: dict[str, Any]) -> str:
    """Where a fan-out run's round trips per chunk come from, process by process."""
    parts = []
    for name, trips in row["chunk_round_trips_by_process"].items():
        viewers = row["viewers_by_process"].get(name)
        parts.append(f"{name} ({viewers} viewers): {_fmt(trips['round_trips'], 3)} = {trips_text(trips)}")
    return "; ".join(parts)


def _fan_round_trip_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    rows = [
        ("redis", r)
        for r in results.get("fanout", {}).get("rows", [])
        if r["variant"] == "redis" and r["viewers"] == GOAL_FAN_VIEWERS
    ]
    fan = results.get("cluster", {}).get("fanout")
    if fan and fan.get("viewers") == GOAL_FAN_VIEWERS:
        rows.append(("Redis Cluster", fan))
    for where, row in rows:
        if "chunk_round_trips_per_chunk" not in row:
            continue
        value = row["chunk_round_trips_per_chunk"]
        goal = (
            f"Redis round trips per chunk at {GOAL_FAN_VIEWERS} viewers (2 processes) "
            f"{LE} {GOAL_FAN_ROUND_TRIPS:g} ({where})"
        )
        measured = f"{value} per chunk: {fan_trips_text(row)}"
        note = (
            f"counted over the middle of the stream ({row['chunk_round_trips_chunks']} chunks); from just "
            f"before its first chunk to its end, {row.get('first_chunk_round_trips_per_chunk')} per chunk; "
            f"with the viewers' attaching, {row['round_trips_per_chunk']} per chunk over the whole run"
        )
        out.append(_goal(goal, measured, met=value <= GOAL_FAN_ROUND_TRIPS, note=note))
    return out


def _peer_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    rows = {(r["variant"], r["backlog"]): r for r in results.get("resume", {}).get("rows", [])}
    if ("peer", GOAL_CATCH_UP_BACKLOG) in rows and ("redis", GOAL_CATCH_UP_BACKLOG) in rows:
        ours = rows[("redis", GOAL_CATCH_UP_BACKLOG)]["catch_up_s"].get("other process")
        theirs = rows[("peer", GOAL_CATCH_UP_BACKLOG)]["catch_up_s"].get("other process")
        out.append(
            _goal(
                "ahead of resumable-stream on resume (10k backlog, catch-up on another process)",
                f"{_fmt(ours, 3)} s vs {_fmt(theirs, 3)} s",
                met=ours is not None and theirs is not None and ours <= theirs,
            )
        )
    fan = {(r["variant"], r["viewers"]): r for r in results.get("fanout", {}).get("rows", [])}
    most = max((v for _, v in fan), default=0)
    if ("peer", most) in fan and ("redis", most) in fan:
        ours_row, theirs_row = fan[("redis", most)], fan[("peer", most)]
        ours_cpu = sum(v for k, v in ours_row["cpu_pct"].items() if k != REDIS_SERVER)
        theirs_cpu = sum(v for k, v in theirs_row["cpu_pct"].items() if k != REDIS_SERVER)
        ahead = (ours_row["p99_ms"] or 0) <= (theirs_row["p99_ms"] or 0) and (
            ours_row["round_trips_per_chunk"] <= theirs_row["round_trips_per_chunk"]
        )
        out.append(
            _goal(
                f"ahead of resumable-stream on fan-out ({most} viewers, 2 processes)",
                f"p99 {_fmt(ours_row['p99_ms'])} vs {_fmt(theirs_row['p99_ms'])} ms; Redis round trips/chunk "
                f"{ours_row['round_trips_per_chunk']} vs {theirs_row['round_trips_per_chunk']}; "
                f"server CPU {ours_cpu:.0f}% vs {theirs_cpu:.0f}%",
                met=ahead,
                note="ahead = p99 latency and Redis round trips per chunk both no worse",
            )
        )
    return out


def _cluster_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    paced = results.get("cluster", {}).get("paced", {})
    out = []
    one, two = paced.get("one process, replicas=0"), paced.get("two processes, replicas=0")
    if one:
        goal = (
            f"p99 added latency {LE} {GOAL_P99_MS:.0f} ms at {_fmt(one['streams'])} streams "
            f"{TIMES} 20 chunks/s (Redis Cluster, one process)"
        )
        measured = (
            f"{_fmt(one['p99_ms'])} ms ({_fmt(one['delivered_per_s'])} of "
            f"{_fmt(one['offered_per_s'])} chunks/s delivered)"
        )
        out.append(_goal(goal, measured, met=one["p99_ms"] is not None and one["p99_ms"] <= GOAL_P99_MS))
    if two:
        per = two["streams"] // len(two["server_cpu_pct_by_process"])
        goal = (
            f"p99 added latency {LE} {GOAL_P99_MS:.0f} ms at {_fmt(per)} streams per process on 2 processes "
            "(Redis Cluster)"
        )
        measured = (
            f"{_fmt(two['p99_ms'])} ms ({_fmt(two['delivered_per_s'])} of "
            f"{_fmt(two['offered_per_s'])} chunks/s delivered)"
        )
        out.append(_goal(goal, measured, met=two["p99_ms"] is not None and two["p99_ms"] <= GOAL_P99_MS))
    wait = wait_cost(results)
    if wait:
        out.append(
            _goal(
                "the cost of replicas=1 (WAIT 1 after every write) on the cluster: reported",
                wait["text"],
                met=None,
                note="what each setting promises: docs/scaling.md",
            )
        )
    return out


def wait_cost(results: dict[str, Any]) -> dict[str, Any]:
    """replicas=0 vs replicas=1 on the cluster: tee throughput and paced p99, and a sentence of them."""
    cluster = results.get("cluster", {})
    tee = cluster.get("tee", {}).get("variants", {})
    paced = cluster.get("paced", {})
    zero, one = paced.get("one process, replicas=0"), paced.get("one process, replicas=1")
    if "replicas=0" not in tee or "replicas=1" not in tee or not zero or not one:
        return {}
    t0, t1 = tee["replicas=0"]["events_per_s"], tee["replicas=1"]["events_per_s"]
    ratio = round(t1 / t0, 2) if t0 else None
    text = (
        f"tee {_fmt(t1)} vs {_fmt(t0)} events/s ({ratio}{TIMES}); {_fmt(one['streams'])} paced streams: p99 "
        f"{_fmt(one['p99_ms'])} vs {_fmt(zero['p99_ms'])} ms, delivered {_fmt(one['delivered_per_s'])} vs "
        f"{_fmt(zero['delivered_per_s'])} chunks/s (replicas=1 vs 0)"
    )
    return {"tee_ratio": ratio, "text": text, "tee": (t0, t1), "paced": (zero, one)}


def _rehearsal_goal(results: dict[str, Any]) -> list[dict[str, Any]]:
    rehearsal = results.get("rehearsal", {})
    point = rehearsal.get("point")
    if not point:
        return []
    processes = len(point["server_cpu_pct_by_process"])
    goal = (
        f"rehearsal: {_fmt(point['streams'])} concurrent streams at {point['rate_per_stream']:g} chunk/s on "
        f"{processes} processes and the 3-master cluster hold ({GE} {REHEARSAL_DELIVERED:.0%} delivered)"
    )
    share = point["delivered_per_s"] / point["offered_per_s"] if point["offered_per_s"] else 0.0
    measured = (
        f"{_fmt(point['delivered_per_s'])} of {_fmt(point['offered_per_s'])} chunks/s, "
        f"p99 {_fmt(point['p99_ms'])} ms, "
        f"{rehearsal['memory']['bytes_per_live_stream']:,} B of Redis per live stream"
    )
    return [_goal(goal, measured, met=share >= REHEARSAL_DELIVERED, note="figures in docs/scaling.md")]


# -- markdown --


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _ratios(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}: {_fmt(v)}" for k, v in values.items()) or DASH


def markdown(results: dict[str, Any]) -> str:
    lines = _header(results)
    lines += _goals_section(results)
    lines += _large_section(results.get("large", {}))
    lines += _tee_section(results.get("tee", {}))
    lines += _concurrency_section(results.get("concurrency", {}))
    lines += _cost_section(results.get("redis_cost", {}))
    lines += _resume_section(results.get("resume", {}))
    lines += _fanout_section(results.get("fanout", {}))
    lines += _cluster_section(results.get("cluster", {}))
    lines += _rehearsal_section(results.get("rehearsal", {}))
    if "stores" in results.get("observability", {}):
        lines += ["## Observability cost", "", *observability.section(results).splitlines()[1:-1], ""]
    names = ("large", "tee", "concurrency", "redis_cost", "resume", "fanout", "cluster", "rehearsal")
    for name in (*names, "observability"):
        if "error" in results.get(name, {}):
            lines += [f"**{name} failed**: `{results[name]['error']}`", ""]
    return "\n".join(lines)


def _header(results: dict[str, Any]) -> list[str]:
    meta = results["meta"]
    m = meta["machine"]
    server = meta["server"]
    peer = (
        f"; peer: resumable-stream {m['peer'].get('resumable-stream')} (redis client "
        f"{m['peer'].get('redis')}) on Node {m['peer'].get('node')}"
        if meta["peer"]["available"]
        else f"; peer skipped: {meta['peer']['reason']}"
    )
    trivial = ", ".join(f"{k} {v} ms" for k, v in meta.get("trivial_request_ms", {}).items())
    busy = [meta.get(k, {}).get("cpu_busy_pct", 0) for k in ("background_at_start", "background_at_end")]
    during = meta.get("other_load_during_run")
    noisy = max(busy) > BUSY_PCT or (during is not None and during["share_of_machine_pct"] > OTHERS_PCT)
    busy_note = " **The machine was not idle: treat the numbers as noisy.**" if noisy else ""
    if during is not None:
        busy_note = (
            f" Other processes used {during['cpu_s']} CPU seconds during the run, "
            f"{during['share_of_machine_pct']}% of the machine.{busy_note}"
        )
    machine = (
        f"{meta['started']}; {m['nproc']} cores ({m['cpu_model']}), {m['memory']} RAM; Python {m['python']}, "
        f"Redis {m['redis']}, Litestar {m['packages']['litestar']}, redis-py {m['packages']['redis']}, "
        f"uvicorn {m['packages']['uvicorn']} (--http {server['http']} --loop {server['loop']}, "
        f"one worker per server process){peer}. Whole run: {meta['duration_s']} s."
    )
    nagle = (
        "Trivial request on a kept-alive connection (the Nagle / delayed-ACK check: about 40 ms would mean "
        f"a stall): {trivial}."
    )
    load = (
        f"Other load on the machine (whole-machine CPU busy before / after the run): {busy[0]}% / {busy[1]}%."
    )
    lines = [f"# Benchmark results ({meta['mode']} mode)", "", machine, "", nagle, "", load + busy_note, ""]
    return lines + _server_logs(meta.get("server_logs", {}))


def _server_logs(logs: dict[str, list[dict[str, Any]]]) -> list[str]:
    """What went wrong inside the servers: their warnings and the exceptions of their tracebacks."""
    if not logs:
        return ["The servers logged no warning and no exception.", ""]
    lines = [
        "What the servers logged (warnings and the exceptions of tracebacks, counted; each server start):",
        "",
    ]
    for name, runs in logs.items():
        for summary in runs:
            found = {**summary.get("warnings", {}), **summary.get("exceptions", {})}
            lines.append(f"- {name}: " + "; ".join(f"{text} ({count})" for text, count in found.items()))
    return [*lines, ""]


def _goals_section(results: dict[str, Any]) -> list[str]:
    verdict = {True: "yes", False: "**no**", None: DASH}
    lines = ["## Goals (reported, not asserted)", ""]
    return lines + _table(
        ["goal", "measured", "met"], [[g["goal"], g["measured"], verdict[g["met"]]] for g in results["goals"]]
    )


def _large_section(large: dict[str, Any]) -> list[str]:
    if "variants" not in large:
        return []
    size = f"{large['items']} items of {large['item_bytes'] / 2**20:g} MiB"
    lines = [f"## 0. Memory: one stream of {size}, as fast as the generator yields, one reader", ""]
    lines += _table(
        ["variant", "idle RSS MiB", "peak RSS MiB", "growth MiB", "MiB/s"],
        [
            [VARIANTS[name], v["idle_rss_mib"], v["peak_rss_mib"], v["peak_growth_mib"], v["mib_per_s"]]
            for name, v in large["variants"].items()
        ],
    )
    note = (
        "The memory store keeps the stream itself (200 MiB here, within its `max_bytes`); the Redis store "
        "keeps it in Redis, and the process holds only its bounded buffers."
    )
    return [*lines, note, ""]


def _tee_section(tee: dict[str, Any]) -> list[str]:
    if "variants" not in tee:
        return []
    lines = [f"## 1. Tee throughput: one stream, {tee['chunks']:,} chunks, median of {tee['repeats']}", ""]
    lines += _table(
        ["variant", "events/s", f"{TIMES} plain", "server CPU \u00b5s/event", "client CPU \u00b5s/event"],
        [
            [
                v["label"],
                v["events_per_s"],
                v["ratio_to_plain"],
                v["server_cpu_us_per_event"],
                v["client_cpu_us_per_event"],
            ]
            for v in tee["variants"].values()
        ],
    )
    return [*lines, f"Redis round trips per chunk over these runs: {tee['redis_round_trips_per_chunk']}.", ""]


def _concurrency_section(conc: dict[str, Any]) -> list[str]:
    if "points" not in conc:
        return []
    rate, window = conc["rate_per_stream"], conc["window_s"]
    title = f"## 2. Concurrency: streams at {rate:.0f} chunks/s each, {window} s window"
    text = (
        "Latency is the client's receive time minus the `time.time()` the generator put in the item at "
        "yield. CPU is percent of one core over the window; the client is the load generator processes on "
        "the same 2 cores."
    )
    lines = [title, "", text, ""]
    header = ["streams", "variant", "delivered/s", "offered/s", "p50 ms", "p99 ms", "max ms", "server CPU %"]
    header += ["Redis CPU %", "client CPU % (procs)", "incomplete streams"]
    rows = [
        [
            p["streams"],
            VARIANTS[p["variant"]],
            p["delivered_per_s"],
            p["offered_per_s"],
            p["p50_ms"],
            p["p99_ms"],
            p["max_ms"],
            p["server_cpu_pct"],
            p["redis_cpu_pct"],
            f"{p['client_cpu_pct']} ({p['client_processes']})",
            p["incomplete_streams"],
        ]
        for p in conc["points"]
    ]
    lines += _table(header, rows)
    most = conc["max_streams_tested"]
    crossing = ", ".join(
        f"{VARIANTS[k]}: {v if v is not None else f'not within {most}'}"
        for k, v in conc["p99_over_100ms_at"].items()
    )
    lines += [f"Stream count where p99 passes 100 ms: {crossing}.", ""]
    connections = [p for p in conc["points"] if "redis_connections" in p]
    if connections:
        counts = ", ".join(
            f"{p['streams']} streams: peak {max(p['redis_connections']['peak'].values(), default=0)}, "
            f"at end {max(p['redis_connections']['last'].values(), default=0)}"
            for p in connections
        )
        lines += [f"Redis connections of the Redis-store server process (CLIENT LIST): {counts}.", ""]
    trips = [p for p in conc["points"] if "round_trips_per_s_by_process" in p]
    if trips:
        counts = ", ".join(
            f"{p['streams']} streams: {sum(p['round_trips_per_s_by_process'].values()):,.0f} round trips/s "
            f"carrying {sum(p['script_calls_per_s_by_process'].values()):,.0f} script calls/s"
            for p in trips
        )
        lines += [f"Redis round trips of the Redis-store server process over the window: {counts}.", ""]
    return lines


def _cost_section(cost: dict[str, Any]) -> list[str]:
    if "fast" not in cost:
        return []
    fast, paced, mem, fol = cost["fast"], cost["paced"], cost["memory"], cost["followers"]
    rows = [
        [
            f"round trips per chunk, fast generator ({fast['chunks']:,} chunks)",
            f"{fast['round_trips_per_chunk']} ({trips_text(fast['round_trips'])})",
        ],
        ["commands per chunk incl. inside Lua, fast generator", fast["commands_per_chunk_incl_lua"]],
        [
            f"round trips per chunk, paced ({paced['chunks']} chunks at {paced['rate']}/s)",
            f"{paced['round_trips_per_chunk']} ({trips_text(paced['round_trips'])})",
        ],
        ["commands per chunk incl. inside Lua, paced", paced["commands_per_chunk_incl_lua"]],
        [
            f"Redis memory per chunk ({mem['payload_bytes_per_chunk']} B payload)",
            f"{mem['bytes_per_chunk']} B",
        ],
        ["Redis memory per stream (meta hash + empty Redis Stream)", f"{mem['bytes_per_stream']} B"],
        [
            f"Redis connections of one process with {fol['followers']} followers of one stream",
            f"peak {fol['connections']['peak']}, at end {fol['connections']['at_end']}",
        ],
        [f"latency p50 / p99 with {fol['followers']} followers", f"{fol['p50_ms']} / {fol['p99_ms']} ms"],
    ]
    return ["## 3. Redis cost", "", *_table(["measure", "value"], rows)]


def _resume_section(resume: dict[str, Any]) -> list[str]:
    if "rows" not in resume:
        return []
    text = (
        "Live: the first request, while a fast generator yields the backlog. Catch-up: a new request from "
        "the start once the backlog is stored (the stream still open), on the producer's process or another "
        "one. TTFE: time to first event."
    )
    lines = ["## 4. Resume: catch-up of a backlog vs reading it live", "", text, ""]
    header = [
        "backlog",
        "variant",
        "live s",
        "live TTFE ms",
        "catch-up s (same proc)",
        "catch-up s (other proc)",
    ]
    header += ["catch-up / live", "catch-up TTFE ms"]
    rows = [
        [
            r["backlog"],
            VARIANTS[r["variant"]],
            r["live_s"],
            r["live_ttfe_ms"],
            r["catch_up_s"].get("same process"),
            r["catch_up_s"].get("other process"),
            _ratios(r["catch_up_over_live"]),
            _ratios(r["catch_up_ttfe_ms"]),
        ]
        for r in resume["rows"]
    ]
    return lines + _table(header, rows)


def _fanout_section(fan: dict[str, Any]) -> list[str]:
    if "rows" not in fan:
        return []
    title = (
        f"## 5. Fan-out: one stream of {fan['chunks']} chunks at {fan['rate']:.0f}/s, viewers on 2 processes"
    )
    text = (
        "Plain SSE has no shared stream: its row is that many independent generators, for the cost of "
        "serving that many clients. The memory store has one process only."
    )
    lines = [title, "", text, ""]
    lines += _table(_FAN_HEADER, [_fan_row(r) for r in fan["rows"]])
    note = (
        "Reads: what carries a chunk to the viewers' processes: for this library the read script (one call "
        "per notification per process, shared by its viewers; the producer's process reads nothing, its "
        "writes' replies feed its viewers), for resumable-stream a PUBLISH per chunk per viewer. Round trips "
        "are counted by each server process itself: the commands it sends one by one, and its pipelines of "
        "script calls; mid-stream from 0.5 s after the first chunk to 0.5 s before the last (reads per chunk "
        "too), from the first chunk to the end (the stream's end included), and over the whole run (each "
        "viewer's attaching included). Commands incl. Lua come from INFO commandstats and include any other "
        "client of the same Redis."
    )
    lines += [note, ""]
    rows = [r for r in fan["rows"] if "chunk_round_trips_by_process" in r and r["viewers"] > 1]
    if rows:
        lines += ["Where the round trips per chunk come from, mid-stream:", ""]
        lines += [f"- {r['viewers']} viewers: {fan_trips_text(r)}" for r in rows]
        lines += [""]
    return lines


_FAN_HEADER = [
    "viewers",
    "variant",
    "reads/chunk (by process)",
    "round trips/chunk: mid-stream",
    "from the first chunk",
    "whole run",
    "Redis cmds/chunk incl. Lua",
    "p50 ms",
    "p99 ms",
    "CPU % by process",
    "delivered / expected",
]


def _fan_row(r: dict[str, Any]) -> list[Any]:
    reads = DASH
    if "reads_command" in r:
        by_process = _ratios(r["reads_per_chunk_by_process"])
        reads = f"{r['reads_command']} {r['reads_per_chunk']} ({by_process})"
    return [
        r["viewers"],
        VARIANTS[r["variant"]],
        reads,
        r.get("chunk_round_trips_per_chunk"),
        r.get("first_chunk_round_trips_per_chunk"),
        r.get("round_trips_per_chunk"),
        r.get("redis_commands_per_chunk_incl_lua"),
        r["p50_ms"],
        r["p99_ms"],
        _ratios(r["cpu_pct"]),
        f"{r['delivered_events']:,} / {r['expected_events']:,}",
    ]


def _cluster_section(cluster: dict[str, Any]) -> list[str]:
    if "paced" not in cluster:
        return []
    lines = [
        "## 6. Redis Cluster: 3 masters, 1 replica each (local), processes seeded with different nodes",
        "",
    ]
    header = ["streams", "setup", "delivered/s", "offered/s", "p50 ms", "p99 ms", "max ms"]
    header += ["server CPU % by process", "Redis CPU % (6 nodes)", "client CPU %", "round trips/s by process"]
    rows = [
        [
            p["streams"],
            label,
            p["delivered_per_s"],
            p["offered_per_s"],
            p["p50_ms"],
            p["p99_ms"],
            p["max_ms"],
            _ratios(p["server_cpu_pct_by_process"]),
            p["redis_cpu_pct"],
            p["client_cpu_pct"],
            _ratios(p.get("round_trips_per_s_by_process", {})),
        ]
        for label, p in cluster["paced"].items()
    ]
    lines += _table(header, rows)
    if "fanout" in cluster:
        lines += ["Fan-out on the cluster (one stream, viewers on 2 processes):", ""]
        lines += _table(_FAN_HEADER, [_fan_row(cluster["fanout"])])
    if "chunk_round_trips_by_process" in cluster.get("fanout", {}):
        lines += [
            f"Where the round trips per chunk come from, mid-stream: {fan_trips_text(cluster['fanout'])}.",
            "",
        ]
    tee = cluster.get("tee", {}).get("variants", {})
    if tee:
        lines += [
            (
                f"Tee on the cluster (one stream of {cluster['tee']['chunks']:,} chunks, median of "
                f"{cluster['tee']['repeats']}):"
            ),
            "",
        ]
        lines += _table(
            ["store setting", "events/s", "server CPU \u00b5s/event"],
            [[name, v["events_per_s"], v["server_cpu_us_per_event"]] for name, v in tee.items()],
        )
    if "connections" in cluster:
        counts = "; ".join(f"{name}: {_ratios(by_node)}" for name, by_node in cluster["connections"].items())
        lines += [f"Connections of each process to each node (port) at the end: {counts}.", ""]
    return lines


def _rehearsal_section(rehearsal: dict[str, Any]) -> list[str]:
    if "point" not in rehearsal:
        return []
    p, shards, memory = rehearsal["point"], rehearsal["shards"], rehearsal["memory"]
    load = rehearsal["load"]
    lines = [
        (
            f"## 7. Rehearsal: {p['streams']:,} streams at {load['rate']:g} chunk/s on 2 processes "
            "and the 3-master cluster"
        ),
        "",
        f"Started over {load['ramp']:g} s, measured over {load['window']:g} s once all were open.",
        "",
    ]
    lines += _table(
        [
            *["delivered/s", "offered/s", "p50 ms", "p99 ms", "max ms", "server CPU % by process"],
            *["Redis CPU %", "client CPU %", "incomplete streams"],
        ],
        [
            [
                p["delivered_per_s"],
                p["offered_per_s"],
                p["p50_ms"],
                p["p99_ms"],
                p["max_ms"],
                _ratios(p["server_cpu_pct_by_process"]),
                p["redis_cpu_pct"],
                p["client_cpu_pct"],
                p["incomplete_streams"],
            ]
        ],
    )
    lines += _table(
        [
            "master (port)",
            "commands/s incl. Lua",
            "EVALSHA/s",
            "instantaneous ops/s",
            "CPU %",
            "CPU \u00b5s/EVALSHA",
            "memory MiB (growth)",
            "keys",
            "sharded channels",
        ],
        [
            [
                port,
                s["commands_per_s"],
                s["evalsha_per_s"],
                s["instantaneous_ops_per_sec"],
                s["cpu_pct"],
                s["cpu_us_per_evalsha"],
                f"{s['used_memory_mib']} ({s['used_memory_growth_mib']})",
                s["keys"],
                s["pubsubshard_channels"],
            ]
            for port, s in shards["by_master"].items()
        ],
    )
    text = (
        f"Masters' CPU {shards['masters_cpu_pct']}%, replicas' {shards['replicas_cpu_pct']}%; above what "
        f"each node spends idle, {shards['masters_cpu_us_per_chunk']} \u00b5s of master CPU and "
        f"{shards['replicas_cpu_us_per_chunk']} \u00b5s of replica CPU per chunk stored "
        f"({shards.get('chunks_stored_per_s')} stored a second, by the XADDs the scripts ran) "
        f"({shards.get('masters_cpu_us_per_chunk_with_idle')} \u00b5s of master CPU with the idle part); "
        f"{shards['evalsha_per_chunk']} EVALSHA and {shards['commands_per_chunk']} commands (incl. Lua) per "
        f"chunk. Memory: {memory['summary']} (sampled keys: events {memory['sampled_events_key_bytes']} B, "
        f"meta {memory['sampled_meta_key_bytes']} B)."
    )
    lines += [text, ""]
    if rehearsal.get("connections"):
        counts = "; ".join(
            f"{name}: {_ratios(by_node)}" for name, by_node in rehearsal["connections"].items()
        )
        lines += [f"Connections of each process to each node (port), mid-window: {counts}.", ""]
    return lines


# -- plots --


COLORS = {"plain": "#888888", "memory": "#1f77b4", "redis": "#d62728", "peer": "#2ca02c"}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib as mpl  # noqa: PLC0415 - only when plotting

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    meta = results["meta"]
    fig.suptitle(f"litestar-resumable benchmarks ({meta['mode']} mode, {meta['machine']['nproc']} cores)")
    _plot_tee(axes[0][0], results.get("tee", {}))
    _plot_concurrency(axes[0][1], axes[0][2], results.get("concurrency", {}))
    _plot_resume(axes[1][0], results.get("resume", {}))
    _plot_fanout(axes[1][1], axes[1][2], results.get("fanout", {}))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_tee(ax: Any, tee: dict[str, Any]) -> None:
    if "variants" not in tee:
        return
    names = list(tee["variants"])
    bars = ax.bar(
        [VARIANTS[n] for n in names],
        [tee["variants"][n]["events_per_s"] for n in names],
        color=[COLORS[n] for n in names],
    )
    for bar, name in zip(bars, names, strict=True):
        ratio = tee["variants"][name]["ratio_to_plain"]
        ax.annotate(
            f"{ratio}{TIMES}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom"
        )
    ax.set_title(f"1. tee throughput, one stream of {tee['chunks']:,} chunks")
    ax.set_ylabel("events/s")
    ax.tick_params(axis="x", labelsize=8)


def _plot_concurrency(latency: Any, cpu: Any, conc: dict[str, Any]) -> None:
    if "points" not in conc:
        return
    for panel, key, label in (
        (latency, "p99_ms", "p99 added latency (ms)"),
        (cpu, "server_cpu_pct", "server CPU (% of a core)"),
    ):
        for variant in ("plain", "memory", "redis"):
            points = [p for p in conc["points"] if p["variant"] == variant]
            if points:
                panel.plot(
                    [p["streams"] for p in points],
                    [max(p[key] or 0.01, 0.01) for p in points],
                    "o-",
                    color=COLORS[variant],
                    label=VARIANTS[variant],
                )
        panel.set_xlabel(f"concurrent streams at {conc['rate_per_stream']:.0f} chunks/s")
        panel.set_ylabel(label)
        panel.legend(fontsize=8)
    latency.set_yscale("log")
    latency.axhline(100, color="black", lw=0.8, ls="--")
    latency.axhline(10, color="black", lw=0.8, ls=":")
    latency.set_title("2. concurrency: p99 latency (-- 100 ms, .. 10 ms)")
    cpu.set_title("2. concurrency: server CPU")


def _plot_resume(ax: Any, resume: dict[str, Any]) -> None:
    if "rows" not in resume:
        return
    for variant in ("plain", "memory", "redis", "peer"):
        rows = [r for r in resume["rows"] if r["variant"] == variant]
        if not rows:
            continue
        backlogs = [r["backlog"] for r in rows]
        ax.plot(
            backlogs,
            [r["live_s"] for r in rows],
            "--",
            color=COLORS[variant],
            label=f"{VARIANTS[variant]}: live",
        )
        if variant != "plain":
            caught = [r["catch_up_s"].get("other process", r["catch_up_s"].get("same process")) for r in rows]
            ax.plot(backlogs, caught, "o-", color=COLORS[variant], label=f"{VARIANTS[variant]}: catch-up")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("backlog (events)")
    ax.set_ylabel("seconds")
    ax.set_title("4. resume: catch-up (other process if any) vs live read")
    ax.legend(fontsize=7)


def _plot_fanout(reads: Any, latency: Any, fan: dict[str, Any]) -> None:
    if "rows" not in fan:
        return
    for variant, label in (
        ("redis", "resumable (Redis): read script"),
        ("peer", "resumable-stream: PUBLISH"),
    ):
        rows = [r for r in fan["rows"] if r["variant"] == variant]
        if not rows:
            continue
        viewers = [r["viewers"] for r in rows]
        reads.plot(
            viewers,
            [max(r.get("reads_per_chunk") or 0.01, 0.01) for r in rows],
            "o-",
            color=COLORS[variant],
            label=label,
        )
        reads.plot(
            viewers,
            [r.get("chunk_round_trips_per_chunk") or r["round_trips_per_chunk"] for r in rows],
            "s--",
            color=COLORS[variant],
            label=f"{VARIANTS[variant]}: round trips",
        )
    reads.set_xscale("log")
    reads.set_yscale("log")
    reads.set_xlabel("viewers of one stream (2 processes)")
    reads.set_ylabel("Redis commands per chunk")
    reads.set_title("5. fan-out: Redis commands per chunk")
    reads.legend(fontsize=7)
    for variant in ("plain", "memory", "redis", "peer"):
        rows = [r for r in fan["rows"] if r["variant"] == variant]
        if rows:
            latency.plot(
                [r["viewers"] for r in rows],
                [max(r["p99_ms"] or 0.01, 0.01) for r in rows],
                "o-",
                color=COLORS[variant],
                label=VARIANTS[variant],
            )
    latency.set_xscale("log")
    latency.set_yscale("log")
    latency.set_xlabel("viewers")
    latency.set_ylabel("p99 added latency (ms)")
    latency.set_title("5. fan-out: p99 latency")
    latency.legend(fontsize=7)
