"""The load generator: a small HTTP/1.1 + Server-Sent Events client, run as a process of its own.

    python -m benchmarks.loadgen < spec.json

It reads a JSON spec on stdin (see :func:`run`), opens every stream it names at its ``start_at`` (wall
clock, so the processes of one run agree), and writes JSON lines on stdout: one ``{"type": "headers"}``
line per stream that asks for it (so the harness learns stream ids while they run), then one
``{"type": "result"}`` line.

The client is an :class:`asyncio.Protocol` that parses the response as it arrives (chunked transfer
encoding, then SSE events), on uvloop when it is installed: much cheaper per event than httpx, so that
on a 2-core machine the client takes as little as it can from the server it measures. Every data event
is checked to follow the one before it (``seq`` is the first field of the benchmark generator's items),
and its latency is its receive time minus the ``time.time()`` the generator put in it at yield.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

_HEAD_END = b"\r\n\r\n"
_SIZE, _DATA, _CRLF, _DONE = range(4)


@dataclass
class StreamSpec:
    port: int
    path: str
    start_at: float = 0.0
    stop_after: int | None = None
    """Close after this many data events (a stream that stays open, say); None: read to its end."""
    headers: dict[str, str] = field(default_factory=dict)
    report_headers: bool = False
    tag: Any = None


class Recorder:
    """What all the streams of this process share: the latency window and its samples."""

    def __init__(self, window: tuple[float, float] | None, *, latency: bool) -> None:
        self.window = window
        self.latency = latency
        self.latencies_ms: list[float] = []
        self.events_in_window = 0
        self.bytes_in_window = 0

    def record(self, now: float, data: bytes) -> None:
        window = self.window
        if window is not None and not window[0] <= now < window[1]:
            return
        self.events_in_window += 1
        if self.latency:
            stamp = data.split(b" ", 2)[1]
            self.latencies_ms.append(round((now - float(stamp)) * 1000.0, 3))


class SSEClient(asyncio.Protocol):
    """One GET whose response is read as Server-Sent Events; ``done`` resolves when it is over."""

    def __init__(self, spec: StreamSpec, recorder: Recorder, report: Any) -> None:
        self.spec = spec
        self.recorder = recorder
        self.report = report
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.status = 0
        self.headers: dict[str, str] = {}
        self.stream_id: str | None = None
        self.t_start = time.time()
        self.t_headers = 0.0
        self.t_first = 0.0
        self.t_last = 0.0
        self.t_done = 0.0
        self.events = 0
        self.ended: str | None = None
        self.error: str | None = None
        self.out_of_order = 0
        self.next_seq: int | None = None
        self.last_id: bytes | None = None
        self.nbytes = 0
        self._head = b""
        self._head_done = False
        self._chunked = False
        self._state = _SIZE
        self._need = 0
        self._raw = b""
        self._sse = b""
        self._sep = b""
        self._nl = b"\n"

    # -- the connection --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment] # uvloop's transports are not asyncio's classes
        extra = "".join(f"{name}: {value}\r\n" for name, value in self.spec.headers.items())
        request = (
            f"GET {self.spec.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.spec.port}\r\n"
            f"Accept: text/event-stream\r\n{extra}\r\n"
        )
        transport.write(request.encode())

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            if self.error is None and self.ended is None and self._state != _DONE:
                self.error = f"connection lost: {exc}" if exc else "connection closed early"
            self._finish()

    def _finish(self) -> None:
        if self.done.done():
            return
        self.t_done = time.time()
        if self.transport is not None:
            self.transport.close()
        self.done.set_result(None)

    def close(self, reason: str) -> None:
        if not self.done.done():
            self.error = self.error or reason
            self._finish()

    # -- HTTP --

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        if not self._head_done:
            self._head += data
            end = self._head.find(_HEAD_END)
            if end < 0:
                return
            self._parse_head(self._head[:end])
            data = self._head[end + 4 :]
            self._head = b""
            if self.done.done():
                return
        if self._chunked:
            self._dechunk(data)
        else:
            self._body(data)

    def _parse_head(self, head: bytes) -> None:
        self._head_done = True
        self.t_headers = time.time()
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self._chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        self.stream_id = self.headers.get("x-resumable-stream-id")
        if self.spec.report_headers:
            self.report(
                {"type": "headers", "tag": self.spec.tag, "status": self.status, "stream_id": self.stream_id}
            )
        if self.status != 200:  # noqa: PLR2004 - the one status that has a body of events
            self.ended = f"status {self.status}"
            self._finish()

    def _dechunk(self, data: bytes) -> None:  # noqa: C901 - one state machine reads best in one place
        raw = self._raw + data if self._raw else data
        pos = 0
        size = len(raw)
        body: list[bytes] = []
        while pos < size:
            if self._state == _SIZE:
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                self._need = int(raw[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                if self._need == 0:
                    self._state = _DONE
                    break
                self._state = _DATA
            elif self._state == _DATA:
                take = min(self._need, size - pos)
                body.append(raw[pos : pos + take])
                pos += take
                self._need -= take
                if self._need == 0:
                    self._state = _CRLF
                    self._need = 2
            elif self._state == _CRLF:
                take = min(self._need, size - pos)
                pos += take
                self._need -= take
                if self._need == 0:
                    self._state = _SIZE
            else:
                break
        self._raw = raw[pos:] if pos < size else b""
        if body:
            self._body(b"".join(body))
        if self._state == _DONE:
            self._finish()

    # -- SSE --

    def _body(self, data: bytes) -> None:
        now = time.time()
        self.nbytes += len(data)
        buffer = self._sse + data if self._sse else data
        if not self._sep:
            eol = buffer.find(b"\n")
            if eol < 0:
                self._sse = buffer
                return
            crlf = eol > 0 and buffer[eol - 1] == 13  # noqa: PLR2004 - b"\r"
            self._nl = b"\r\n" if crlf else b"\n"
            self._sep = self._nl * 2
        blocks = buffer.split(self._sep)
        self._sse = blocks.pop()
        for block in blocks:
            self._event(block, now)
            if self.done.done():
                return

    def _event(self, block: bytes, now: float) -> None:  # noqa: C901 - the fields of one SSE event
        if not block or block[0] == 58:  # noqa: PLR2004 - b":": a comment (heartbeat)
            return
        data = None
        name = None
        for line in block.split(self._nl):
            if line.startswith(b"data: "):
                data = line[6:]
            elif line.startswith(b"id: "):
                self.last_id = line[4:]
            elif line.startswith(b"event: "):
                name = line[7:]
        if name == b"end":
            self.ended = (data or b"").decode()
            self.t_last = now
            self._finish()
            return
        if data is None:
            return  # retry: and the like
        seq = int(data[: data.index(b" ")])
        if self.next_seq is not None and seq != self.next_seq:
            self.out_of_order += 1
        self.next_seq = seq + 1
        self.events += 1
        if self.events == 1:
            self.t_first = now
        self.t_last = now
        self.recorder.record(now, data)
        if self.spec.stop_after is not None and self.events >= self.spec.stop_after:
            self.ended = "stopped"
            self._finish()

    def summary(self) -> dict[str, Any]:
        return {
            "tag": self.spec.tag,
            "status": self.status,
            "stream_id": self.stream_id,
            "last_id": self.last_id.decode() if self.last_id else None,
            "t_start": self.t_start,
            "t_headers": self.t_headers,
            "t_first": self.t_first,
            "t_last": self.t_last,
            "t_done": self.t_done,
            "events": self.events,
            "bytes": self.nbytes,
            "ended": self.ended,
            "error": self.error,
            "out_of_order": self.out_of_order,
        }


async def _open(spec: StreamSpec, recorder: Recorder, report: Any) -> SSEClient:
    loop = asyncio.get_running_loop()
    delay = spec.start_at - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    client = SSEClient(spec, recorder, report)
    client.t_start = time.time()
    try:
        await loop.create_connection(lambda: client, "127.0.0.1", spec.port)
    except OSError as exc:
        client.error = f"connect: {exc}"
        client._finish()  # noqa: SLF001 - the client's own helper
    return client


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Open ``spec["streams"]`` and read them until they end, or until ``spec["deadline"]`` (wall clock).

    ``spec["window"]``: ``[t0, t1]``, the wall-clock interval whose events are counted and whose latencies
    are kept (all of them when absent); ``spec["latency"]``: keep latencies at all.
    """
    window = tuple(spec["window"]) if spec.get("window") else None
    recorder = Recorder(window, latency=bool(spec.get("latency", False)))  # type: ignore[arg-type]

    def report(line: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    streams = [StreamSpec(**item) for item in spec["streams"]]
    cpu_start = _cpu()
    cpu_window: list[float] = []

    async def sample_window() -> None:
        if window is None:
            return
        for moment in window:
            await asyncio.sleep(max(0.0, moment - time.time()))
            cpu_window.append(_cpu())

    sampler = asyncio.create_task(sample_window())
    clients = await asyncio.gather(*(_open(stream, recorder, report) for stream in streams))
    deadline = float(spec.get("deadline", time.time() + 600))
    pending = [client.done for client in clients if not client.done.done()]
    if pending:
        await asyncio.wait(pending, timeout=max(0.0, deadline - time.time()))
    for client in clients:
        client.close("deadline")
    with contextlib.suppress(asyncio.CancelledError):
        sampler.cancel()
        await sampler
    return {
        "type": "result",
        "pid": os.getpid(),
        "streams": [client.summary() for client in clients],
        "latencies_ms": recorder.latencies_ms,
        "events_in_window": recorder.events_in_window,
        "cpu_total_s": _cpu() - cpu_start,
        "cpu_window_s": cpu_window[1] - cpu_window[0] if len(cpu_window) == 2 else None,  # noqa: PLR2004
    }


def main() -> None:
    spec = json.load(sys.stdin)
    try:
        import uvloop  # noqa: PLC0415 - optional

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is in benchmarks/requirements.txt
        runner = asyncio.run
    result = runner(run(spec))
    # A result can be megabytes of latencies: it goes to a file (a pipe that the event loop may have left
    # non-blocking can cut a large write short), and stdout only says where.
    output = spec.get("output")
    if output:
        with open(output, "w", encoding="utf-8") as file:  # noqa: PTH123
            json.dump(result, file)
        result = {"type": "result", "output": output}
    os.set_blocking(sys.stdout.fileno(), True)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
