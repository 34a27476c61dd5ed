"""An app on a real uvicorn server in the test's own event loop, and a bound on every await."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import httpx
import uvicorn

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float = 10.0) -> T:
    """Await with a bound, so a broken test fails instead of hanging."""
    async with asyncio.timeout(seconds):
        return await awaitable


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app`` on a real uvicorn server in this event loop; yield an httpx client for it.

    Litestar's own test clients hand over a response only once it is complete, which cannot show a
    stream while it is live; this is a real server and a real client in the test's loop, so the test can
    also look at the store the app uses.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_level="warning", ws="none", http="h11")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await within(_started(server, task))
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        await within(task, 30)
        sock.close()


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
