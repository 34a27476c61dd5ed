"""The app the end-to-end and fault tests run under uvicorn: ``uvicorn _support.app:app --app-dir tests``.

Configured by environment variables, so every server process gets its own settings:

- ``E2E_REDIS_URL``: use a :class:`RedisStreamStore` on this Redis (with ``E2E_KEY_PREFIX``; with
  ``E2E_REDIS_CLUSTER=1`` a Redis Cluster one of whose nodes the URL names, and ``E2E_REPLICAS`` the
  store's ``replicas``); unset, the in-process :class:`MemoryStreamStore`;
- ``E2E_LEASE``: the producers' lease in seconds (default 10);
- ``E2E_HEARTBEAT``: seconds of silence before a follower sends ``: ping`` (default 15);
- ``E2E_SHUTDOWN_GRACE``: the plugin's ``shutdown_grace`` in seconds (default 10);
- ``E2E_STORE_RETRY_FOR``: the routes' ``store_retry_for`` in seconds (default 4);
- ``E2E_MAX_GENERATIONS``, ``E2E_MAX_FOLLOWERS``, ``E2E_SHARED_LIMITS=1``, ``E2E_LIMITS_TTL``: the limits;
- ``E2E_METRICS=1``: the plugin's Prometheus metrics, served at ``/metrics`` by Litestar's own
  ``PrometheusController`` (with its ``PrometheusConfig`` middleware), as an app would.

Generators that pace themselves do it on an absolute schedule (item ``i`` at ``start + i * interval``), so
a generator's own duration is known in advance and a test can tell whether something slowed it down.
"""

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from litestar import Controller, Litestar, get, post

from litestar_resumable import MemoryStreamStore, RedisStreamStore, ResumablePlugin, StreamStore, resumable

# Tokens with what SSE encoding must survive: multi-byte text, line breaks, field-like text, blanks.
VOCABULARY = (
    "the ",
    "quick ",
    "naïve ",
    "café ",
    "日本語 ",
    "🙂 ",
    "two\nlines ",
    "data: x ",
    "id: 7 ",
    ": not a comment ",
    "  ",
    "\n",
    "",
    ", ",
    "end",
)


def tokens(seed: int, n: int) -> list[str]:
    """The ``n`` tokens ``/text?seed=...`` yields: what the tests expect to read back."""
    rng = random.Random(seed)  # noqa: S311 - test data, not a secret
    return [rng.choice(VOCABULARY) for _ in range(n)]


def big_chunk(i: int, size: int) -> str:
    """Item ``i`` of ``/big``: ``size`` characters that name their position."""
    head = f"{i}:"
    return head + "x" * max(0, size - len(head))


async def _paced(n: int, interval: float) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(n):
        if interval > 0:
            delay = start + i * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        yield i


def _store() -> StreamStore:
    url = os.environ.get("E2E_REDIS_URL")
    if url:
        return RedisStreamStore.from_url(
            url,
            cluster=os.environ.get("E2E_REDIS_CLUSTER") == "1",
            replicas=int(os.environ.get("E2E_REPLICAS", "0")),
            key_prefix=os.environ.get("E2E_KEY_PREFIX", "fault"),
        )
    return MemoryStreamStore()


@get("/count")
@resumable
async def count(n: int = 10, interval: float = 0.0) -> AsyncIterator[str]:
    """``str(i)`` for i in range(n), item i at ``i * interval`` seconds."""
    async for i in _paced(n, interval):
        yield str(i)


@get("/text")
@resumable
async def text(seed: int = 0, n: int = 50, interval: float = 0.0) -> AsyncIterator[str]:
    """``tokens(seed, n)``, item i at ``i * interval`` seconds."""
    words = tokens(seed, n)
    async for i in _paced(n, interval):
        yield words[i]


@get("/big")
@resumable
async def big(n: int = 100, size: int = 8000, interval: float = 0.0) -> AsyncIterator[str]:
    """``big_chunk(i, size)`` for i in range(n), item i at ``i * interval`` seconds."""
    async for i in _paced(n, interval):
        yield big_chunk(i, size)


@get("/boom")
@resumable
async def boom(n: int = 1) -> AsyncIterator[str]:
    """n items, then an exception whose text must not reach the client."""
    for i in range(n):
        yield str(i)
    raise RuntimeError("secret detail")


@get("/hold")
@resumable
async def hold(n: int = 1) -> AsyncIterator[str]:
    """n items, then nothing until cancelled (or the process stops or dies)."""
    for i in range(n):
        yield str(i)
    await asyncio.Event().wait()


_stall = asyncio.Event()


@get("/stall")
@resumable
async def stall(seconds: float = 3.0) -> AsyncIterator[str]:
    """One item; then, once ``POST /stall/go`` is asked, the whole event loop blocked for ``seconds`` (sync
    code in an async handler): no lease renewal meanwhile, so readers elsewhere may give the stream up;
    then one item more."""
    yield "before"
    await _stall.wait()
    _stall.clear()
    time.sleep(seconds)  # noqa: ASYNC251 - blocking the loop is the point
    yield "after"


@post("/stall/go", status_code=202, sync_to_thread=False)
def stall_go() -> None:
    _stall.set()


class ChatController(Controller):
    """Keyed generations, as apps write them: one running answer per chat, in a Controller."""

    path = "/chats"

    @post("/{chat_id:str}")
    @resumable(key="chat_id")
    async def chat(self, chat_id: str) -> AsyncIterator[str]:
        """A new answer cancels the chat's running one; this one runs until it is cancelled."""
        yield f"{chat_id} started"
        await asyncio.Event().wait()

    @post("/{chat_id:str}/strict")
    @resumable(key="chat_id", on_conflict="reject")
    async def strict(self, chat_id: str) -> AsyncIterator[str]:
        """A new answer is refused (409) while the chat's answer runs."""
        yield f"{chat_id} started"
        await asyncio.Event().wait()


@get("/pid", sync_to_thread=False)
def pid() -> int:
    """This server's process id: the readiness check, and a route that needs no store."""
    return os.getpid()


def _observability() -> dict[str, Any]:
    if os.environ.get("E2E_METRICS") != "1":
        return {}
    from litestar.plugins.prometheus import PrometheusConfig, PrometheusController  # noqa: PLC0415

    return {"middleware": [PrometheusConfig().middleware], "extra_routes": [PrometheusController]}


_watching = _observability()

app = Litestar(
    [count, text, big, boom, hold, stall, stall_go, ChatController, pid, *_watching.get("extra_routes", [])],
    middleware=_watching.get("middleware", []),
    plugins=[
        ResumablePlugin(
            store=_store(),
            lease=float(os.environ.get("E2E_LEASE", "10")),
            heartbeat=float(os.environ.get("E2E_HEARTBEAT", "15")),
            shutdown_grace=float(os.environ.get("E2E_SHUTDOWN_GRACE", "10")),
            store_retry_for=float(os.environ.get("E2E_STORE_RETRY_FOR", "4")),
            max_followers=int(os.environ.get("E2E_MAX_FOLLOWERS", "1000")),
            max_generations=int(os.environ["E2E_MAX_GENERATIONS"])
            if "E2E_MAX_GENERATIONS" in os.environ
            else None,
            shared_limits=os.environ.get("E2E_SHARED_LIMITS") == "1",
            limits_ttl=float(os.environ.get("E2E_LIMITS_TTL", "30")),
            metrics=bool(_watching),
        )
    ],
)
