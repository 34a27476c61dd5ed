"""Redis commands and round trips per chunk for a fast generator, through the whole stack.

    python -m benchmarks.redis_round_trips [--chunks 20000] [--viewers 1]

Starts the app on uvicorn in this process with a RedisStreamStore (unique key prefix), streams a
generator that yields as fast as it can, reads it with ``viewers`` concurrent clients, and reports the
delta of Redis's INFO commandstats. Round trips are counted as the calls our code makes (each EVALSHA,
XRANGE, HMGET, ... is one round trip; the Lua script's inner XADDs are not).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from litestar import Litestar, get
from redis.asyncio import Redis

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from conftest import serve

from litestar_resumable import RedisStreamStore, ResumablePlugin, resumable

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_INNER = {"xadd", "hset", "hget", "hmget", "pexpire", "publish", "time", "exists", "get", "set", "del"}


async def commandstats(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): value["calls"] for name, value in stats.items()}


async def main(chunks: int, viewers: int) -> None:
    prefix = f"bench-{uuid.uuid4().hex[:8]}"

    @get("/fast")
    @resumable
    async def fast(n: int) -> AsyncIterator[str]:
        for i in range(n):
            yield f"token {i}"

    admin = Redis.from_url(REDIS_URL)
    store = RedisStreamStore(Redis.from_url(REDIS_URL), key_prefix=prefix)
    app = Litestar([fast], plugins=[ResumablePlugin(store)])
    async with serve(app) as client:
        before = await commandstats(admin)
        started = time.perf_counter()
        first = await client.get("/fast", params={"n": chunks}, timeout=120)
        stream_id = first.headers["x-resumable-stream-id"]

        async def view() -> int:
            response = await client.get(f"/resumable/streams/{stream_id}", timeout=120)
            return response.text.count("\nid: ") + response.text.startswith("id: ")

        counts = await asyncio.gather(*(view() for _ in range(viewers - 1)))
        elapsed = time.perf_counter() - started
        after = await commandstats(admin)
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    delta = {name: calls for name, calls in sorted(delta.items()) if calls > 0 and name != "info"}
    round_trips = sum(calls for name, calls in delta.items() if name not in _INNER)
    print(f"chunks={chunks} viewers={viewers} elapsed={elapsed:.2f}s events/s={chunks / elapsed:,.0f}")
    print(f"commands (incl. inside Lua): {delta}")
    print(f"round trips: {round_trips}  per chunk: {round_trips / chunks:.4f}")
    if not all(count >= chunks for count in counts):
        raise SystemExit(f"a viewer missed events: {counts}")
    keys = [key async for key in admin.scan_iter(match=f"{prefix}:*")]
    if keys:
        await admin.delete(*keys)
    await admin.aclose()
    await store.redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--viewers", type=int, default=1)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.chunks, arguments.viewers))
