"""Clients that misbehave on purpose: one that hangs up and resumes at random, one that stops reading."""

from __future__ import annotations

import asyncio
import fcntl
import random
import socket
import struct
import termios

import h11
import httpx

from _support.proxy import DroppingProxy
from _support.reading import sse_events
from litestar_resumable.testing import SSEEvent


class DroppedClient:
    """A client that reads one generation, hangs up at random points and resumes on a random worker."""

    def __init__(
        self,
        index: int,
        rng: random.Random,
        proxies: list[DroppingProxy],
        *,
        tokens: int,
        interval: float,
        drops: int,
    ) -> None:
        self.index = index
        self.rng = rng
        self.proxies = proxies
        self.seed = rng.randrange(2**31)
        self.tokens = tokens
        self.interval = interval
        self.drops = drops
        self.stream_id: str | None = None
        self.events: list[SSEEvent] = []
        self.connections = 0
        self.hang_ups = 0
        self.resets = 0
        self.restarts = 0

    def _request(self, proxy: DroppingProxy) -> tuple[str, dict[str, str]]:
        route = f"{proxy.url}/text?seed={self.seed}&n={self.tokens}&interval={self.interval}"
        if self.stream_id is None:
            return route, {}
        last = self.events[-1].id if self.events else f"{self.stream_id}.0"
        assert last is not None
        resume = f"{proxy.url}/resumable/streams/{self.stream_id}"
        way = self.rng.randrange(3)
        if way == 0:  # what a browser's EventSource does: the same URL with Last-Event-ID
            return route, {"Last-Event-ID": last}
        if way == 1:
            return resume, {"Last-Event-ID": last}
        return f"{resume}?last_event_id={last}", {}

    async def run(self, http: httpx.AsyncClient) -> None:
        await asyncio.sleep(self.rng.uniform(0, 0.5))
        hang_up_after = sorted(self.rng.sample(range(1, self.tokens + 1), self.drops))
        while True:
            assert self.connections + self.resets < 60, f"client {self.index} keeps failing"
            url, headers = self._request(self.rng.choice(self.proxies))
            try:
                async with http.stream("GET", url, headers=headers) as response:
                    assert response.status_code == 200, (url, response.status_code, await response.aread())
                    self.connections += 1
                    stream_id = response.headers["x-resumable-stream-id"]
                    if self.stream_id is None:
                        self.stream_id = stream_id
                    assert stream_id == self.stream_id
                    async for event in sse_events(response):
                        self.events.append(event)
                        if event.is_terminal:
                            return
                        if hang_up_after and event.position >= hang_up_after[0]:
                            hang_up_after.pop(0)
                            self.hang_ups += 1
                            break
            except httpx.TransportError:
                self.resets += 1
                if self.stream_id is None:
                    self.restarts += 1  # lost before the headers: nothing seen, so a new generation is fine
            await asyncio.sleep(self.rng.uniform(0, 0.15))


def queued_bytes(sock: socket.socket) -> int:
    """Bytes in the socket's receive queue (FIONREAD)."""
    return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0])


class StalledClient:
    """A raw HTTP client with a tiny receive buffer, reading only when told to."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        self.conn = h11.Connection(h11.CLIENT)
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.received = 0
        self.complete = False
        self.closed = False

    async def request(self, target: str) -> None:
        """Send the request and read just far enough for the response's headers."""
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        request = h11.Request(
            method="GET",
            target=target,
            headers=[("Host", f"127.0.0.1:{self.port}"), ("Accept", "text/event-stream")],
        )
        await loop.sock_sendall(self.sock, self.conn.send(request) + self.conn.send(h11.EndOfMessage()))
        while not self.headers:
            await self._read_some(1024)

    async def _read_some(self, size: int) -> None:
        data = await asyncio.get_running_loop().sock_recv(self.sock, size)
        self.received += len(data)
        self.conn.receive_data(data)
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError:  # closed in the middle of the body: dropped
                self.closed = True
                return
            if event is h11.NEED_DATA:
                break
            if isinstance(event, h11.Response):
                assert event.status_code == 200
                self.headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self.complete = True
                return
            elif event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                self.closed = True
                return
        if not data:
            self.closed = True

    async def read_to_end(self) -> None:
        while not (self.complete or self.closed):
            await self._read_some(65536)

    def close(self) -> None:
        self.sock.close()
