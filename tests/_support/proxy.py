"""A TCP proxy that can cut every connection through it, as a network drop does."""

from __future__ import annotations

import asyncio
from typing import Self

from _support.asgi import within


class DroppingProxy:
    """A TCP proxy in front of a server that can cut every connection through it, as a network drop does."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.connections = 0
        self.port = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self.drop()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        await within(self._server.wait_closed(), 5)

    def drop(self) -> None:
        """Reset every proxied connection, both sides."""
        for writer in list(self._writers):
            writer.transport.abort()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        writers = {client_writer}
        self._writers.add(client_writer)
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            writers.add(upstream_writer)
            self._writers.add(upstream_writer)
            await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))
        finally:
            for writer in writers:
                writer.close()
            self._writers.difference_update(writers)
            self._handlers.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:  # the other side was reset: this direction is over too
        pass
    finally:
        writer.close()
