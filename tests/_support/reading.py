"""Reading live SSE responses event by event (the package's own decoder underneath)."""

from __future__ import annotations

import collections
import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Callable

import httpx

from litestar_resumable.testing import SSEDecoder, SSEEvent


async def sse_events(response: httpx.Response) -> AsyncIterator[SSEEvent]:
    """The events of a response as they arrive; an unfinished last block is dropped."""
    decoder = SSEDecoder()
    async for text in response.aiter_text():
        for event in decoder.feed(text):
            yield event


class Reader:
    """One SSE response, read event by event, keeping its raw text and remembering how it ended."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: list[SSEEvent] = []
        self._text: list[str] = []
        self.decoder = SSEDecoder()
        self.ended: str | None = None  # "terminal", "closed" (no terminal event) or "reset: <error>"
        self.ended_at: float | None = None
        self._pending: collections.deque[SSEEvent] = collections.deque()
        self._chunks = response.aiter_text()

    @property
    def stream_id(self) -> str:
        return self.response.headers["x-resumable-stream-id"]

    @property
    def text(self) -> str:
        """The raw text read so far."""
        return "".join(self._text)

    def _end(self, how: str) -> None:
        self.ended = how
        self.ended_at = time.monotonic()

    async def _read(self) -> bool:
        """Read one more chunk; False once the response has ended."""
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self._end("closed")
            return False
        except httpx.TransportError as exc:
            self._end(f"reset: {type(exc).__name__}")
            return False
        self._text.append(chunk)
        self._pending.extend(self.decoder.feed(chunk))
        return True

    async def next(self) -> SSEEvent | None:
        while not self._pending:
            if self.ended is not None or not await self._read():
                return None
        event = self._pending.popleft()
        self.events.append(event)
        if event.is_terminal:
            self._end("terminal")
        return event

    async def comments(self, n: int) -> None:
        """Read until ``n`` comments (heartbeats) have come, failing if an event comes first."""
        while self.decoder.comments < n:
            assert not self._pending, f"an event came where a comment was expected: {self._pending[0]}"
            assert await self._read(), "the response ended where a comment was expected"

    async def take(self, n: int) -> list[SSEEvent]:
        taken = []
        for _ in range(n):
            event = await self.next()
            assert event is not None, f"the response ended ({self.ended}) where an event was expected"
            taken.append(event)
        return taken

    async def rest(self) -> list[SSEEvent]:
        """Every event up to the terminal one or the end of the response."""
        start = len(self.events)
        while await self.next() is not None:
            pass
        return self.events[start:]


@contextlib.asynccontextmanager
async def open_sse(
    client: httpx.AsyncClient, url: str, *, last_event_id: str | None = None
) -> AsyncIterator[Reader]:
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, (url, response.status_code, await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream")
        try:
            yield Reader(response)
        finally:
            # Closing a response whose server was killed must not hide the test's own outcome.
            with contextlib.suppress(httpx.TransportError):
                await response.aclose()


async def follow_to_end(client: httpx.AsyncClient, url: str, *, last_event_id: str | None = None) -> Reader:
    async with open_sse(client, url, last_event_id=last_event_id) as reader:
        await reader.rest()
        return reader


def check_stream(
    events: list[SSEEvent], stream_id: str, data: list[str], status: str = "done", *, first: int = 1
) -> None:
    """``events`` are a stream from position ``first``: ``data``, then exactly one terminal event."""
    assert {e.stream_id for e in events} == {stream_id}
    assert [e.position for e in events] == list(range(first, first + len(data) + 1))
    assert [e.data for e in events[:-1]] == data
    assert [e.is_terminal for e in events] == [False] * len(data) + [True]
    assert events[-1].status == status


def numbers(n: int, start: int = 0) -> list[str]:
    return [str(i) for i in range(start, start + n)]


_live: weakref.WeakKeyDictionary[httpx.Response, Reader] = weakref.WeakKeyDictionary()


def live(response: httpx.Response) -> Reader:
    """The one Reader of a response, so several reads of it go on where the last one stopped."""
    reader = _live.get(response)
    if reader is None:
        reader = _live[response] = Reader(response)
    return reader


async def read_until(response: httpx.Response, done: Callable[[list[SSEEvent]], bool]) -> list[SSEEvent]:
    """Read until ``done(events so far)`` holds; return those events."""
    reader = live(response)
    while not done(reader.events):
        if await reader.next() is None:
            raise AssertionError(f"the response ended ({reader.ended}) before the events looked for")
    return reader.events


def ended(events: list[SSEEvent]) -> bool:
    return bool(events) and events[-1].is_terminal
