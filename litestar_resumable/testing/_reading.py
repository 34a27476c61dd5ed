"""Reading a resumable stream in a test: all of it, or the first events of it, then the rest."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar_resumable._sse import SSEDecoder, SSEEvent

if TYPE_CHECKING:
    import httpx

__all__ = ("SSEResponse", "parse_sse", "read_sse")


def parse_sse(text: str) -> list[SSEEvent]:
    """The events of SSE text; an unfinished last block is dropped, as a browser drops it."""
    return SSEDecoder().feed(text)


@dataclass(frozen=True)
class SSEResponse:
    """What :func:`read_sse` read: the response's status and headers, and the events it read."""

    status_code: int
    headers: httpx.Headers
    events: list[SSEEvent]

    @property
    def stream_id(self) -> str | None:
        """The ``X-Resumable-Stream-Id`` header: the stream this response reads."""
        value: str | None = self.headers.get("x-resumable-stream-id")
        return value

    @property
    def last_event_id(self) -> str | None:
        """The id to resume after: the last event's that had one."""
        return next((event.id for event in reversed(self.events) if event.id is not None), None)

    @property
    def terminal(self) -> SSEEvent | None:
        """The terminal ``end`` event, if it was read."""
        return next((event for event in self.events if event.is_terminal), None)


async def read_sse(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    last_event_id: str | None = None,
    max_events: int | None = None,
    timeout: float = 30.0,
    **request: Any,
) -> SSEResponse:
    """Send a request and read its events, to the end of the response or the first ``max_events``.

    With ``max_events`` the connection is closed after that many events, as a client that drops does;
    resume with ``last_event_id=earlier.last_event_id`` (sent as ``Last-Event-ID``). ``request`` goes to
    httpx (``params=``, ``json=``, ``headers=``). The whole read is bounded by ``timeout`` seconds.

    Litestar's ``AsyncTestClient`` hands over a response only once it is complete, so with it a stream is
    read to its end before ``max_events`` applies: right for the resume itself, which is what a test of
    "no duplicate, no gap" checks. For a stream that is still running, use a client on a live server.
    """
    headers = dict(request.pop("headers", None) or {})
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    events: list[SSEEvent] = []
    async with asyncio.timeout(timeout), client.stream(method, url, headers=headers, **request) as response:
        decoder = SSEDecoder()
        async for text in response.aiter_text():
            events.extend(decoder.feed(text))
            if max_events is not None and len(events) >= max_events:
                del events[max_events:]
                break
    return SSEResponse(response.status_code, response.headers, events)
