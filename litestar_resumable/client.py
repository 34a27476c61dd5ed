"""A small client for resumable streams, on httpx.

For server-to-server consumers (and this project's tests): iterate a stream's events, and when the
connection drops, reconnect with ``Last-Event-ID`` and exponential backoff until the terminal ``end``
event arrives. A drop before the first event resumes from ``<stream id>.0`` (the position before the
first event, named by the ``X-Resumable-Stream-Id`` header), so a retried POST never starts a second
generation. Needs the ``client`` extra (``pip install 'litestar-resumable[client]'``), which is httpx.

    async with httpx.AsyncClient(base_url="http://localhost:8000") as http:
        async for event in stream_events(http, "POST", "/chat/42", json={"prompt": "hi"}):
            if event.is_terminal:
                print(event.json()["status"])
            else:
                print(event.data, end="")
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from litestar_resumable._sse import SSEDecoder

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ("ReceivedEvent", "StreamEnded", "stream_events")

_RETRYABLE_STATUS = frozenset({502, 503, 504})


class StreamEnded(Exception):  # noqa: N818 - it names what happened, not an error class
    """The stream could not be resumed: the connection failed more than ``max_reconnects`` times in a row."""


@dataclass(frozen=True)
class ReceivedEvent:
    """One event of a resumable stream as a client sees it."""

    id: str
    """The event's id; empty for a terminal event a follower sent of its own when its store was gone."""
    data: str
    event: str = "message"

    @property
    def is_terminal(self) -> bool:
        return self.event == "end"

    def json(self) -> Any:
        return msgspec.json.decode(self.data)


class _Cursor:
    """Where a reconnect resumes from: the last event id, else the stream's position 0."""

    def __init__(self, last_event_id: str | None) -> None:
        self.last_event_id = last_event_id
        self.stream_id: str | None = None
        self.ended = False

    @property
    def resume_from(self) -> str | None:
        if self.last_event_id is not None:
            return self.last_event_id
        return None if self.stream_id is None else f"{self.stream_id}.0"


async def _read_once(
    client: httpx.AsyncClient, method: str, url: str, cursor: _Cursor, request: dict[str, Any]
) -> AsyncIterator[ReceivedEvent]:
    """One connection's events. Ends quietly when the connection ends, with or without the terminal event."""
    headers = dict(request.get("headers") or {})
    if cursor.resume_from is not None:
        headers["Last-Event-ID"] = cursor.resume_from
    async with client.stream(method, url, **{**request, "headers": headers}) as response:
        if response.status_code == httpx.codes.NO_CONTENT:  # resumed after the end: nothing more
            cursor.ended = True
            return
        if response.status_code in _RETRYABLE_STATUS:
            raise httpx.RemoteProtocolError(f"server answered {response.status_code}")
        response.raise_for_status()
        resumable = "x-resumable-stream-id" in response.headers
        cursor.stream_id = response.headers.get("x-resumable-stream-id", cursor.stream_id)
        decoder = SSEDecoder()
        async for text in response.aiter_text():
            for sse in decoder.feed(text):
                if sse.id is not None and resumable:
                    cursor.last_event_id = sse.id
                yield ReceivedEvent(sse.id or "", sse.data, sse.event)


async def stream_events(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    last_event_id: str | None = None,
    max_reconnects: int = 10,
    backoff: float = 0.2,
    max_backoff: float = 5.0,
    **request: Any,
) -> AsyncIterator[ReceivedEvent]:
    """Yield a stream's events up to and with the terminal ``end`` event, resuming across drops.

    ``request`` goes to httpx as it is (``json=``, ``params=``, ``headers=``, ``timeout=``) and is sent
    again on every reconnect, as a browser's EventSource does. 4xx answers raise
    :class:`httpx.HTTPStatusError`. A resume after the end (204) yields no event; iteration just stops.
    A plain (non-resumable) stream is read once, to its end.
    """
    cursor = _Cursor(last_event_id)
    failures = 0
    while True:
        problem: Exception | None = None
        try:
            async for event in _read_once(client, method, url, cursor, request):
                failures = 0
                yield event
                if event.is_terminal:
                    return
            if cursor.ended or cursor.resume_from is None:
                return  # ended before we came back, or a plain stream that ended
        except httpx.TransportError as exc:
            problem = exc
        failures += 1
        if failures > max_reconnects:
            raise StreamEnded(f"gave up after {max_reconnects} reconnects") from problem
        delay = min(max_backoff, backoff * 2 ** (failures - 1))
        await asyncio.sleep(delay * (0.5 + random.random() / 2))  # noqa: S311 - jitter, not a secret
