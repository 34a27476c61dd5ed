"""The app the end-to-end tests run under uvicorn: ``uvicorn e2e_app:app --app-dir tests``.

Configured by environment variables, so every server process of a test gets its own settings:

- ``E2E_REDIS_URL``: use a :class:`RedisStreamStore` on this Redis (with ``E2E_KEY_PREFIX``); unset, the
  in-process :class:`MemoryStreamStore`;
- ``E2E_LEASE``: the producers' lease in seconds (default 10);
- ``E2E_HEARTBEAT``: seconds of silence before a follower sends ``: ping`` (default 15).
"""

import asyncio
import os
from collections.abc import AsyncIterator

from litestar import Litestar, get

from litestar_resumable import MemoryStreamStore, RedisStreamStore, ResumablePlugin, StreamStore, resumable


def _store() -> StreamStore:
    url = os.environ.get("E2E_REDIS_URL")
    if url:
        return RedisStreamStore.from_url(url, key_prefix=os.environ.get("E2E_KEY_PREFIX", "e2e"))
    return MemoryStreamStore()


@get("/count")
@resumable
async def count(n: int = 10, interval: float = 0.0) -> AsyncIterator[str]:
    """``str(i)`` for i in range(n), ``interval`` seconds apart."""
    for i in range(n):
        if i and interval > 0:
            await asyncio.sleep(interval)
        yield str(i)


@get("/hold")
@resumable
async def hold(n: int = 1) -> AsyncIterator[str]:
    """n items, then nothing until cancelled (or the process dies)."""
    for i in range(n):
        yield str(i)
    await asyncio.Event().wait()


@get("/boom")
@resumable
async def boom(n: int = 1) -> AsyncIterator[str]:
    """n items, then an exception whose text must not reach the client."""
    for i in range(n):
        yield str(i)
    raise RuntimeError("secret detail")


@get("/pid", sync_to_thread=False)
def pid() -> int:
    """This server's process id: the tests' readiness check, and proof of which process answered."""
    return os.getpid()


app = Litestar(
    [count, hold, boom, pid],
    plugins=[
        ResumablePlugin(
            store=_store(),
            lease=float(os.environ.get("E2E_LEASE", "10")),
            heartbeat=float(os.environ.get("E2E_HEARTBEAT", "15")),
        )
    ],
)
