"""The Durable Streams routes' reads: finding the stream a request names, and answering ``HEAD`` and ``GET``.

A durable stream is found by its name, per owner (``_responses.scoped_key``); a ``@resumable`` route's
stream by its id, for its owner only (the owner function of its route). A catch-up read or a ``HEAD`` is
one store call (after finding the stream). Live reads (long-poll, SSE) wait on the store's watch of the
stream, as the plugin's followers do, so on the Redis store a process reads a stream once for all its
waiting clients. The write handlers (``_durable_routes``) build on this class.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

from litestar.response.streaming import ASGIStreamingResponse

from litestar_resumable._durable import (
    NOW,
    ProtocolError,
    cursor_after,
    is_text,
    offset_of,
    parse_offset,
    rfc3339,
    sse_control,
    sse_data,
)
from litestar_resumable._durable_http import SECURITY_HEADERS, DurableSettings, respond
from litestar_resumable._durable_sources import DurableSource, Read, ResumableSource, Source
from litestar_resumable._ids import is_stream_id
from litestar_resumable._responses import owner_id, owner_of, scoped_key
from litestar_resumable._store.base import StreamStore
from litestar_resumable._store.durable_types import DURABLE_FORMAT

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from litestar import Request
    from litestar.response.base import ASGIResponse

    from litestar_resumable._plugin import ResumablePlugin

_READ_LIMIT = 10_000  # events per read at most (besides max_read_bytes)


class DurableReads:
    """The routes' lookups and read handlers (``HEAD``, ``GET``), over the plugin's store."""

    def __init__(
        self, plugin: ResumablePlugin, owner: Callable[..., Any] | None, settings: DurableSettings
    ) -> None:
        self.plugin = plugin
        self.owner = owner
        self.settings = settings

    @property
    def store(self) -> StreamStore:
        return self.plugin.store

    @property
    def keeps_durable(self) -> bool:
        """Whether the store keeps durable streams (a store of an app's own may not: then these routes
        read ``@resumable`` streams only)."""
        return type(self.store).durable_id is not StreamStore.durable_id

    # -- finding streams --

    async def durable_id(self, name: str, request: Request[Any, Any, Any]) -> str | None:
        if not self.keeps_durable:
            return None
        return await self.store.durable_id(await self.scoped(name, request))

    async def requester(self, request: Request[Any, Any, Any]) -> str | None:
        """Who asks, as the routes' owner function says (None without one)."""
        if self.owner is None:
            return None
        owner = self.owner(request)
        return owner_id(await owner if inspect.isawaitable(owner) else owner)

    async def scoped(self, name: str, request: Request[Any, Any, Any]) -> str:
        """The name of the requester's durable stream ``name`` in the store (names are per owner)."""
        return scoped_key(name, await self.requester(request))

    async def find(self, name: str, request: Request[Any, Any, Any]) -> Source:
        """The stream a request names: a durable stream of the requester's, or a ``@resumable`` stream the
        requester may read; 404 otherwise (another owner's stream is as unknown as a missing one)."""
        stream_id = await self.durable_id(name, request)
        if stream_id is not None:
            return DurableSource(self.store, stream_id)
        info = await self.store.info(name) if is_stream_id(name) else None
        if info is not None and info.format != DURABLE_FORMAT:
            options = self.plugin.options_for(info.route)
            if await owner_of(options, request) == info.owner:
                # Its lease is checked at its own pace: the lease recorded with it, else its route's.
                return ResumableSource(self.store, name, info.lease or options.lease)
        raise ProtocolError(404, f"no stream {name!r}")

    # -- reads --

    async def _read(self, source: Source, offset: int, *, touch: bool) -> Read:
        read = await source.read(
            offset, limit=_READ_LIMIT, max_bytes=self.settings.max_read_bytes, touch=touch
        )
        if read is None:
            raise ProtocolError(404, "the stream is gone")
        return read

    async def head(self, name: str, request: Request[Any, Any, Any]) -> ASGIResponse:
        read = await self._read(await self.find(name, request), NOW, touch=False)
        reply = {
            "Content-Type": read.content_type,
            "Stream-Next-Offset": offset_of(read.tail),
            "Cache-Control": "no-store",
        }
        if read.ttl is not None:
            reply["Stream-TTL"] = str(read.ttl)
        if read.expires_at is not None:
            reply["Stream-Expires-At"] = rfc3339(read.expires_at)
        _closure(reply, read)
        return respond(200, reply)

    async def get(self, name: str, request: Request[Any, Any, Any]) -> ASGIResponse:
        query = request.query_params
        offsets = query.getall("offset", [])
        offset = parse_offset(offsets)
        live = query.get("live")
        if live not in (None, "long-poll", "sse"):
            raise ProtocolError(400, "live must be long-poll or sse")
        if live is not None and not offsets:
            raise ProtocolError(400, f"live={live} needs an offset (-1 for the start, now for the tail)")
        source = await self.find(name, request)
        cursor = query.get("cursor")
        read = await self._read(source, offset, touch=True)
        if live == "sse":
            return self.sse(source, read, cursor)
        if live is None:
            return self._catch_up(source, read, request, tail_only=offset == NOW)
        if not read.events and not read.closed:
            read = await self._long_poll(source, read)
        if read.events:
            response = self._catch_up(source, read, request, tail_only=False)
            if not read.at_eof:
                response.headers["Stream-Cursor"] = cursor_after(cursor)
            return response
        reply = {"Stream-Next-Offset": offset_of(read.end), "Stream-Up-To-Date": "true"}
        _closure(reply, read)
        if not read.closed:
            reply["Stream-Cursor"] = cursor_after(cursor)
        return respond(204, reply)

    def _catch_up(
        self, source: Source, read: Read, request: Request[Any, Any, Any], *, tail_only: bool
    ) -> ASGIResponse:
        reply = {"Content-Type": read.content_type, "Stream-Next-Offset": offset_of(read.end)}
        if read.up_to_date:
            reply["Stream-Up-To-Date"] = "true"
        _closure(reply, read)
        # Data at an offset never changes, so a chunk may be cached; an empty answer at the tail may not.
        reply["Cache-Control"] = "no-store" if tail_only or not read.events else self.settings.cache_control
        if not tail_only:
            etag = f'"{source.stream_id}:{read.position}:{read.end}{":c" if read.at_eof else ""}"'
            reply["ETag"] = etag
            if request.headers.get("if-none-match") == etag:
                return respond(304, reply)
        return respond(200, reply, source.body(read.content_type, read.events))

    async def _long_poll(self, source: Source, read: Read) -> Read:
        """Wait up to ``long_poll_timeout`` for data after ``read``'s position, or for the close."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.long_poll_timeout
        async with self.store.watch(source.stream_id) as watch:
            while (remaining := deadline - loop.time()) > 0:
                await source.check(watch)
                if await watch.wait(read.end, min(remaining, source.check_interval)):
                    again = await self._read(source, read.end, touch=False)
                    if again.events or again.closed:
                        return again
        return read

    def sse(self, source: Source, first: Read, cursor: str | None) -> ASGIStreamingResponse:
        """The stream as SSE from ``first`` on: ``data`` events, each followed by a ``control`` event, live
        until the close (or ``sse_duration``, after which the client reconnects at its last offset)."""
        settings = self.settings
        text = is_text(first.content_type)
        cursor_value = cursor_after(cursor)

        def frame(read: Read) -> bytes:
            data = sse_data(source.body(read.content_type, read.events), text=text) if read.events else b""
            return data + sse_control(_control(read, cursor_value))

        async def body() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + settings.sse_duration
            read = first
            async with self.store.watch(source.stream_id) as watch:
                yield frame(read)
                sent = loop.time()
                while not read.at_eof:
                    if not read.events:  # caught up: wait for more, or until a keep-alive is due
                        now = loop.time()
                        if now >= deadline:
                            return
                        await source.check(watch)
                        timeout = min(deadline, sent + settings.keepalive) - now
                        await watch.wait(read.end, min(timeout, source.check_interval))
                    try:
                        read = await self._read(source, read.end, touch=False)
                    except ProtocolError:  # deleted meanwhile
                        return
                    if read.events or read.at_eof or loop.time() - sent >= settings.keepalive:
                        yield frame(read)
                        sent = loop.time()

        reply = {
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
            **SECURITY_HEADERS,
        }
        if not text:
            reply["Stream-SSE-Data-Encoding"] = "base64"
        # Litestar's Stream would add "; charset=utf-8" to the content type, which the protocol's clients
        # compare exactly.
        return ASGIStreamingResponse(iterator=body(), status_code=200, headers=reply)


def _control(read: Read, cursor: str) -> dict[str, object]:
    fields: dict[str, object] = {"streamNextOffset": offset_of(read.end)}
    if read.at_eof:
        fields.update(streamClosed=True, upToDate=True)
        if read.status is not None:
            fields["resumableStatus"] = read.status
        return fields
    fields["streamCursor"] = cursor
    if read.up_to_date:
        fields["upToDate"] = True
    return fields


def _closure(reply: dict[str, str], read: Read) -> None:
    if read.at_eof:
        reply["Stream-Closed"] = "true"
        if read.status is not None:
            reply["Stream-Resumable-Status"] = read.status
