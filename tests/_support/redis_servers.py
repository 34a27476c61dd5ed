"""Redis servers of a test's own (to pause, kill and restart) and a proxy that loses a reply."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Self

from redis import Redis
from redis.exceptions import RedisError

from _support.servers import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class OwnRedis:
    """A throwaway ``redis-server`` of this test's own, free to pause, kill and restart."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.data_dir = data_dir  # its own --dir: a restart must never load someone's dump.rdb
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **options: Any) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=2, **options)

    def start(self) -> None:
        """Start an empty server on this port (again, after a kill) and wait until it answers."""
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(RedisError, OSError):
                client = self.client(socket_timeout=1)
                try:
                    if client.ping():
                        assert client.dbsize() == 0, "a restarted Redis must start empty"
                        return
                finally:
                    client.close()
            assert self.process.poll() is None, f"redis-server exited with {self.process.returncode}"
            assert time.monotonic() < deadline, "redis-server did not answer within 10 s"
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def pause(self, seconds: float) -> None:
        """``CLIENT PAUSE <ms> ALL``: every client's every command waits until the pause is over."""
        client = self.client(socket_timeout=5)
        try:
            client.execute_command("CLIENT", "PAUSE", round(seconds * 1000), "ALL")
        finally:
            client.close()

    def wait_unpaused(self, timeout: float) -> None:
        """Return once Redis answers again (a PING waits out a pause)."""
        client = self.client(socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()


SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "litestar_resumable" / "_store"


def script_sha(name: str) -> bytes:
    """The SHA1 that redis-py's EVALSHA sends for one of the store's Lua scripts (the shared library,
    then the script, as the store registers them)."""
    text = (SCRIPTS_DIR / "_redis_lib.lua").read_bytes() + (SCRIPTS_DIR / name).read_bytes()
    return hashlib.sha1(text).hexdigest().encode()  # noqa: S324 - Redis's own choice of hash


class ReplyLosingProxy:
    """A TCP proxy in front of Redis that lets the ``nth`` run of one script through and then cuts the
    connection before its reply gets back: what a network blip or a failover does to a command in flight.
    """

    def __init__(self, target_port: int, sha: bytes, nth: int) -> None:
        self.target_port = target_port
        self.sha = sha
        self.nth = nth
        self.seen = 0
        self.cut = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for transport in list(self._transports):
            transport.abort()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._transports.add(client_writer.transport)
        lose_next_reply = False
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._transports.add(upstream_writer.transport)

            async def requests() -> None:
                nonlocal lose_next_reply
                while data := await client_reader.read(65536):
                    if b"EVALSHA" in data and self.sha in data:
                        self.seen += 1
                        lose_next_reply = lose_next_reply or self.seen == self.nth
                    upstream_writer.write(data)
                    await upstream_writer.drain()

            async def replies() -> None:
                while data := await upstream_reader.read(65536):
                    if lose_next_reply:
                        self.cut += 1
                        return  # Redis has run the script; the client never hears of it
                    client_writer.write(data)
                    await client_writer.drain()

            pipes = {asyncio.create_task(requests()), asyncio.create_task(replies())}
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            upstream_writer.transport.abort()
            client_writer.transport.abort()
            await asyncio.wait(pipes)
            for pipe in pipes:
                if not pipe.cancelled():
                    pipe.exception()  # read, so an OSError of a reset pipe is not reported as lost
            self._transports.discard(upstream_writer.transport)
        except OSError:
            pass
        finally:
            client_writer.transport.abort()
            self._transports.discard(client_writer.transport)
            self._handlers.discard(task)
