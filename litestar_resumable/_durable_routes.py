"""The Durable Streams routes: each protocol request answered from the plugin's store.

One route (``{path}/{name:path}``, every method) serves two kinds of stream:

- **durable streams**, created with ``PUT`` and written with ``POST`` by any client (``StreamStore`` keeps
  their protocol state: ``create_durable``, ``append_durable``, ``read_durable``, ``delete_durable``). Their
  names are per owner, as keys are (``_responses.scoped_key``), so one user's ``chat-1`` is not another's;
- **streams of ``@resumable`` routes** (and of ``StreamWriter`` / ``SyncStreamWriter``), read by stream id:
  ``GET`` and ``HEAD`` only, as ``application/json`` streams of their events, closed by their terminal
  event, and served only to their owner (the owner function of the stream's route), as the plugin's own
  resume route does.

A catch-up read or a ``HEAD`` is one store call (after finding the stream by name). Live reads (long-poll,
SSE) wait on the store's watch of the stream, as the plugin's followers do, so on the Redis store a process
reads a stream once for all its waiting clients. Every response, errors included, carries
``X-Content-Type-Options: nosniff`` and ``Cross-Origin-Resource-Policy: cross-origin`` (PROTOCOL.md,
"Browser Security Headers").
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from litestar import Request, Response, Router, route
from litestar.enums import HttpMethod
from litestar.exceptions import HTTPException
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from litestar_resumable._durable import (
    JSON_TYPE,
    NOW,
    START,
    ProtocolError,
    body_of,
    cursor_after,
    events_of,
    first_part,
    is_data,
    is_text,
    offset_of,
    parse_count,
    parse_expires_at,
    parse_offset,
    parse_producer_number,
    parse_ttl,
    resumable_body,
    resumable_status,
    rfc3339,
    sse_control,
    sse_data,
)
from litestar_resumable._errors import StoreUnavailableError, StreamLimitError
from litestar_resumable._ids import is_stream_id, new_stream_id
from litestar_resumable._responses import owner_id, owner_of, scoped_key
from litestar_resumable._store.base import (
    DURABLE_FORMAT,
    DurableStream,
    Fork,
    Producer,
    StreamStore,
    media_type,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence

    from litestar.types import Guard

    from litestar_resumable._events import StreamEvent
    from litestar_resumable._plugin import ResumablePlugin
    from litestar_resumable._store.base import DurableAppend, StreamWatch

__all__ = ("DurableSettings", "durable_streams_router")

logger = logging.getLogger("litestar_resumable")

_SECURITY = {"X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "cross-origin"}
_READ_LIMIT = 10_000  # events per read at most (besides max_read_bytes)
_DEFAULT_TYPE = "application/octet-stream"
_DURABLE_ID_SUFFIX = "-d"  # 28 characters: never a stream id of the plugin's routes (26)


@dataclass(frozen=True)
class DurableSettings:
    """How the Durable Streams routes behave (the keyword arguments of ``durable_streams_router``)."""

    long_poll_timeout: float = 30.0
    sse_duration: float = 60.0
    keepalive: float = 15.0
    max_append_bytes: int = 4 * 1024 * 1024
    max_read_bytes: int = 1024 * 1024
    cache_control: str = "private, max-age=60, stale-while-revalidate=300"

    def __post_init__(self) -> None:
        for name in ("long_poll_timeout", "sse_duration", "keepalive", "max_append_bytes", "max_read_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


@dataclass
class _Read:
    """One read of a stream: its data events after a position, and where that leaves the reader."""

    content_type: str
    position: int
    events: list[StreamEvent]
    tail: int
    """The stream's newest data position when read."""
    closed: bool
    status: str | None = None
    """The ending of a ``@resumable`` stream, once closed."""
    ttl: int | None = None
    expires_at: float | None = None

    @property
    def end(self) -> int:
        """Where the reader is after this read: the next offset's position."""
        return self.events[-1].position if self.events else self.position

    @property
    def up_to_date(self) -> bool:
        return self.end >= self.tail

    @property
    def at_eof(self) -> bool:
        """The read reaches the end of a closed stream."""
        return self.closed and self.up_to_date


class _Source:
    """A stream the routes read: a durable stream, or a ``@resumable`` stream (read-only)."""

    check_interval = math.inf
    """Seconds between checks that the stream's producer lives (``@resumable`` streams only)."""

    def __init__(self, store: StreamStore, stream_id: str) -> None:
        self.store = store
        self.stream_id = stream_id

    async def read(self, offset: int, *, limit: int, max_bytes: int, touch: bool) -> _Read | None:
        """The data after ``offset`` (a position, :data:`START` or :data:`NOW`); None if gone; 400 if
        ``offset`` is beyond the stream's end."""
        raise NotImplementedError

    def body(self, content_type: str, events: Sequence[StreamEvent]) -> bytes:
        raise NotImplementedError

    async def check(self, watch: StreamWatch) -> None:
        """End the stream as interrupted if its producer died (``@resumable`` streams)."""


class _DurableSource(_Source):
    async def read(self, offset: int, *, limit: int, max_bytes: int, touch: bool) -> _Read | None:
        position = 0 if offset in (START, NOW) else offset
        state, events = await self.store.read_durable(
            self.stream_id, position, limit=0 if offset == NOW else limit, max_bytes=max_bytes, touch=touch
        )
        if state is None:
            return None
        if state.deleted:
            raise ProtocolError(410, "the stream was deleted (it is kept for the streams forked from it)")
        if offset == NOW:
            position = state.tail
        elif position > state.tail:
            raise ProtocolError(400, "the offset is beyond the end of the stream")
        data = [event for event in events if is_data(event) and event.position <= state.tail]
        return _Read(
            state.content_type,
            position,
            data,
            state.tail,
            state.closed,
            ttl=state.ttl,
            expires_at=state.expires_at,
        )

    def body(self, content_type: str, events: Sequence[StreamEvent]) -> bytes:
        return body_of(events, content_type)


class _ResumableSource(_Source):
    def __init__(self, store: StreamStore, stream_id: str, lease: float) -> None:
        super().__init__(store, stream_id)
        self.check_interval = lease / 2
        self._checked_at = -math.inf

    async def read(self, offset: int, *, limit: int, max_bytes: int, touch: bool) -> _Read | None:  # noqa: ARG002 - no TTL to renew
        info = await self.store.info(self.stream_id)
        if info is None:
            return None
        tail = info.last_position if info.is_running else info.last_position - 1
        position = tail if offset == NOW else max(offset, 0)
        if position > tail:
            raise ProtocolError(400, "the offset is beyond the end of the stream")
        # One event at least: the read at a closed stream's tail finds its terminal event (and status).
        events = await self.store.read_after(
            self.stream_id, position, limit=1 if offset == NOW else max(limit, 1), max_bytes=max_bytes
        )
        terminal = events[-1] if events and not is_data(events[-1]) else None
        if terminal is not None:
            tail = terminal.position - 1
        data = [] if offset == NOW else [event for event in events if is_data(event)]
        status = None if terminal is None else resumable_status(terminal)
        return _Read(JSON_TYPE, position, data, tail, terminal is not None or not info.is_running, status)

    def body(self, content_type: str, events: Sequence[StreamEvent]) -> bytes:  # noqa: ARG002 - always JSON
        return resumable_body(events)

    async def check(self, watch: StreamWatch) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._checked_at >= self.check_interval:
            self._checked_at = now
            await watch.interrupt_if_abandoned(self.check_interval)


class _Routes:
    def __init__(
        self, plugin: ResumablePlugin, path: str, owner: Callable[..., Any] | None, settings: DurableSettings
    ) -> None:
        self.plugin = plugin
        self.path = path
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

    async def _durable_id(self, name: str, request: Request[Any, Any, Any]) -> str | None:
        if not self.keeps_durable:
            return None
        return await self.store.durable_id(await self._scoped(name, request))

    async def serve(self, name: str, request: Request[Any, Any, Any]) -> ASGIResponse:
        handlers: dict[str, Callable[[str, Request[Any, Any, Any]], Awaitable[ASGIResponse]]] = {
            "PUT": self.put,
            "POST": self.post,
            "DELETE": self.delete,
            "HEAD": self.head,
        }
        if not name:
            return _error(404, "name a stream: the path after the mount point", {})
        try:
            return await handlers.get(request.method, self.get)(name, request)
        except ProtocolError as exc:
            return _error(exc.status, exc.message, exc.headers)
        except StoreUnavailableError as exc:
            logger.warning("%s %s: %s", request.method, request.url.path, exc)
            return _error(503, "the stream store is unavailable; try again shortly", {"Retry-After": "1"})

    # -- finding streams --

    async def _owner(self, request: Request[Any, Any, Any]) -> str | None:
        """Who asks, as the routes' owner function says (None without one)."""
        if self.owner is None:
            return None
        owner = self.owner(request)
        return owner_id(await owner if inspect.isawaitable(owner) else owner)

    async def _scoped(self, name: str, request: Request[Any, Any, Any]) -> str:
        """The name of the requester's durable stream ``name`` in the store (names are per owner)."""
        return scoped_key(name, await self._owner(request))

    async def _find(self, name: str, request: Request[Any, Any, Any]) -> _Source:
        """The stream a request names: a durable stream of the requester's, or a ``@resumable`` stream the
        requester may read; 404 otherwise (another owner's stream is as unknown as a missing one)."""
        stream_id = await self._durable_id(name, request)
        if stream_id is not None:
            return _DurableSource(self.store, stream_id)
        info = await self.store.info(name) if is_stream_id(name) else None
        if info is not None and info.format != DURABLE_FORMAT:
            options = self.plugin.options_for(info.route)
            if await owner_of(options, request) == info.owner:
                # Its lease is checked at its own pace: the lease recorded with it, else its route's.
                return _ResumableSource(self.store, name, info.lease or options.lease)
        raise ProtocolError(404, f"no stream {name!r}")

    async def _unwritable(self, name: str, request: Request[Any, Any, Any]) -> ProtocolError:
        """404 for an unknown stream; 405 for a ``@resumable`` stream, which only its generation writes."""
        try:
            await self._find(name, request)
        except ProtocolError as exc:
            return exc
        return ProtocolError(
            405, "this stream is written by its generation: read it only", {"Allow": "GET, HEAD"}
        )

    # -- writes --

    async def put(self, name: str, request: Request[Any, Any, Any]) -> ASGIResponse:
        if not self.keeps_durable:
            raise ProtocolError(501, f"{type(self.store).__name__} does not keep durable streams")
        headers = request.headers
        content_type = headers.get("content-type")
        ttl, expires_at = _expiry(headers)
        close = _flag(headers.get("stream-closed"))
        fork, source, data = await self._fork(headers, request)
        if source is not None:
            if content_type is not None and media_type(content_type) != media_type(source.content_type):
                raise ProtocolError(409, "a fork has its source's content type")
            content_type = content_type or source.content_type
            if ttl is None and expires_at is None:  # a fork without an expiry of its own takes its source's
                ttl, expires_at = source.ttl, source.expires_at
        content_type = content_type or _DEFAULT_TYPE
        data = [*data, *events_of(await request.body(), content_type, create=True)]
        scoped = await self._scoped(name, request)
        await self._not_a_resumable_id(name, scoped)
        try:
            created, state = await self.store.create_durable(
                new_stream_id(scoped) + _DURABLE_ID_SUFFIX,
                name=scoped,
                content_type=content_type,
                data=data,
                close=close,
                owner=await self._owner(request),
                ttl=ttl,
                expires_at=expires_at,
                fork=fork,
            )
        except StreamLimitError as exc:  # a fork larger than the store copies
            raise ProtocolError(413, str(exc)) from exc
        except ValueError as exc:  # the fork's source went meanwhile
            raise ProtocolError(409, str(exc)) from exc
        same = (
            media_type(state.content_type) == media_type(content_type)
            and state.ttl == ttl
            and _same_time(state.expires_at, expires_at)
            and state.closed == close
            and state.fork == (None if fork is None else fork.spec)
            and not state.deleted
        )
        if not created and not same:
            raise ProtocolError(
                409, "the stream exists with another content type, expiry, fork or closed state"
            )
        reply = {"Content-Type": state.content_type, "Stream-Next-Offset": offset_of(state.tail)}
        if state.closed:
            reply["Stream-Closed"] = "true"
        if created:
            reply["Location"] = str(request.url).split("?", 1)[0]
        return _response(201 if created else 200, reply)

    async def _not_a_resumable_id(self, name: str, scoped: str) -> None:
        """409 for a new durable stream named as a ``@resumable`` stream's id (it would hide it)."""
        if is_stream_id(name) and await self.store.durable_id(scoped) is None:
            info = await self.store.info(name)
            if info is not None and info.format != DURABLE_FORMAT:
                raise ProtocolError(409, "a stream of a @resumable route has this id")

    async def _fork_source(self, source_path: str, request: Request[Any, Any, Any]) -> DurableStream:
        """The durable stream ``Stream-Forked-From`` names (a path under these routes, of the same owner)."""
        prefix = self.path + "/"
        source_name = unquote(source_path.split("?", 1)[0])
        source = None
        if source_name.startswith(prefix):
            source_id = await self.store.durable_id(
                await self._scoped(source_name.removeprefix(prefix), request)
            )
            if source_id is not None:
                source, _ = await self.store.read_durable(source_id, 0, limit=0, touch=False)
        if source is None:
            raise ProtocolError(404, f"no stream {source_path!r} to fork")
        if source.deleted:
            raise ProtocolError(409, "the stream to fork was deleted")
        return source

    async def _fork(
        self, headers: Mapping[str, str], request: Request[Any, Any, Any]
    ) -> tuple[Fork | None, DurableStream | None, list[tuple[str | None, str]]]:
        """What a ``PUT`` forks: the fork, its source, and the first part of the source's next append that
        it takes (``Stream-Fork-Sub-Offset``); nothing without ``Stream-Forked-From``."""
        source_path = headers.get("stream-forked-from")
        offset_text, sub_text = headers.get("stream-fork-offset"), headers.get("stream-fork-sub-offset")
        if source_path is None:
            if offset_text is not None or sub_text is not None:
                raise ProtocolError(
                    400, "Stream-Fork-Offset and Stream-Fork-Sub-Offset need Stream-Forked-From"
                )
            return None, None, []
        sub = 0 if sub_text is None else parse_count("Stream-Fork-Sub-Offset", sub_text)
        if sub and offset_text is None:
            raise ProtocolError(400, "Stream-Fork-Sub-Offset needs Stream-Fork-Offset")
        source = await self._fork_source(source_path, request)
        source_id = source.stream_id
        offset = NOW if offset_text is None else parse_offset([offset_text])
        position = source.tail if offset == NOW else max(offset, 0)
        if position > source.tail:
            raise ProtocolError(400, "Stream-Fork-Offset is beyond the end of the stream to fork")
        part: list[tuple[str | None, str]] = []
        if sub:
            _, events = await self.store.read_durable(source_id, position, limit=1, touch=False)
            if not events or not is_data(events[0]):
                raise ProtocolError(400, "Stream-Fork-Sub-Offset is past the end of the stream to fork")
            part = [first_part(events[0], source.content_type, sub)]
        return Fork(source_id, position, f"{source_id}|{position}|{sub}"), source, part

    async def post(self, name: str, request: Request[Any, Any, Any]) -> ASGIResponse:
        headers = request.headers
        close = _flag(headers.get("stream-closed"))
        producer = _producer(headers)
        body = await request.body()
        content_type = headers.get("content-type") or ""
        if not body and not close:
            raise ProtocolError(400, "an append needs a body (or Stream-Closed: true to close the stream)")
        if body and not content_type:
            raise ProtocolError(400, "an append needs a Content-Type")
        # Parsed by the type the client says; the store compares it with the stream's.
        data = events_of(body, content_type, create=False)
        stream_id = await self._durable_id(name, request)
        if stream_id is None:
            raise await self._unwritable(name, request)
        result = await self.store.append_durable(
            stream_id,
            data,
            content_type=content_type,
            stream_seq=headers.get("stream-seq"),
            producer=producer,
            close=close,
        )
        return _appended(result, producer, has_data=bool(data))

    async def delete(self, name: str, request: Request[Any, Any, Any]) -> ASGIResponse:
        stream_id = await self._durable_id(name, request)
        if stream_id is None:
            raise await self._unwritable(name, request)
        if not await self.store.delete_durable(stream_id):
            state, _ = await self.store.read_durable(stream_id, 0, limit=0, touch=False)
            if state is not None and state.deleted:
                raise ProtocolError(410, "the stream was deleted (it is kept for the streams forked from it)")
            raise ProtocolError(404, f"no stream {name!r}")
        return _response(204, {})

    # -- reads --

    async def _read(self, source: _Source, offset: int, *, touch: bool) -> _Read:
        read = await source.read(
            offset, limit=_READ_LIMIT, max_bytes=self.settings.max_read_bytes, touch=touch
        )
        if read is None:
            raise ProtocolError(404, "the stream is gone")
        return read

    async def head(self, name: str, request: Request[Any, Any, Any]) -> ASGIResponse:
        read = await self._read(await self._find(name, request), NOW, touch=False)
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
        return _response(200, reply)

    async def get(self, name: str, request: Request[Any, Any, Any]) -> ASGIResponse:
        query = request.query_params
        offsets = query.getall("offset", [])
        offset = parse_offset(offsets)
        live = query.get("live")
        if live not in (None, "long-poll", "sse"):
            raise ProtocolError(400, "live must be long-poll or sse")
        if live is not None and not offsets:
            raise ProtocolError(400, f"live={live} needs an offset (-1 for the start, now for the tail)")
        source = await self._find(name, request)
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
        return _response(204, reply)

    def _catch_up(
        self, source: _Source, read: _Read, request: Request[Any, Any, Any], *, tail_only: bool
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
                return _response(304, reply)
        return _response(200, reply, source.body(read.content_type, read.events))

    async def _long_poll(self, source: _Source, read: _Read) -> _Read:
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

    def sse(self, source: _Source, first: _Read, cursor: str | None) -> ASGIStreamingResponse:
        """The stream as SSE from ``first`` on: ``data`` events, each followed by a ``control`` event, live
        until the close (or ``sse_duration``, after which the client reconnects at its last offset)."""
        settings = self.settings
        text = is_text(first.content_type)
        cursor_value = cursor_after(cursor)

        def frame(read: _Read) -> bytes:
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
            **_SECURITY,
        }
        if not text:
            reply["Stream-SSE-Data-Encoding"] = "base64"
        # Litestar's Stream would add "; charset=utf-8" to the content type, which the protocol's clients
        # compare exactly.
        return ASGIStreamingResponse(iterator=body(), status_code=200, headers=reply)


def _control(read: _Read, cursor: str) -> dict[str, object]:
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


def _closure(reply: dict[str, str], read: _Read) -> None:
    if read.at_eof:
        reply["Stream-Closed"] = "true"
        if read.status is not None:
            reply["Stream-Resumable-Status"] = read.status


_REFUSALS = {
    "closed": (409, "the stream is closed"),
    "content_type": (409, "the stream has another content type"),
    "stream_seq": (409, "Stream-Seq must be greater than the last one, byte by byte"),
    "epoch_restart": (400, "a new producer epoch starts at Producer-Seq 0"),
    "deleted": (410, "the stream was deleted (it is kept for the streams forked from it)"),
    "missing": (404, "the stream is gone"),
}


def _appended(result: DurableAppend, producer: Producer | None, *, has_data: bool) -> ASGIResponse:
    reply = {"Stream-Next-Offset": offset_of(result.tail)}
    if result.closed:
        reply["Stream-Closed"] = "true"
    outcome = result.outcome
    if outcome in _REFUSALS:
        status, message = _REFUSALS[outcome]
        return _error(status, message, reply)
    if outcome == "stale_epoch":
        return _error(
            403, "a newer epoch of this producer has written", {"Producer-Epoch": str(result.producer_epoch)}
        )
    if outcome == "seq_gap":
        expected = {"Producer-Expected-Seq": str(result.producer_seq)}
        received = {"Producer-Received-Seq": str(producer.seq if producer is not None else "")}
        return _error(409, "Producer-Seq skips ahead", {**expected, **received})
    if producer is not None:
        reply["Producer-Epoch"] = str(
            producer.epoch if result.producer_epoch is None else result.producer_epoch
        )
        if result.producer_seq is not None:
            reply["Producer-Seq"] = str(result.producer_seq)
    # A producer's new data is 200; anything else that succeeds (a retry, a close, a plain append) 204.
    return _response(200 if outcome == "appended" and producer is not None and has_data else 204, reply)


def _producer(headers: Mapping[str, str]) -> Producer | None:
    producer_id, epoch, seq = (
        headers.get(name) for name in ("producer-id", "producer-epoch", "producer-seq")
    )
    if producer_id is None and epoch is None and seq is None:
        return None
    if producer_id is None or epoch is None or seq is None:
        raise ProtocolError(400, "give Producer-Id, Producer-Epoch and Producer-Seq together")
    if not producer_id:
        raise ProtocolError(400, "Producer-Id must not be empty")
    return Producer(
        producer_id,
        parse_producer_number("Producer-Epoch", epoch),
        parse_producer_number("Producer-Seq", seq),
    )


def _expiry(headers: Mapping[str, str]) -> tuple[int | None, float | None]:
    """A ``PUT``'s ``Stream-TTL`` or ``Stream-Expires-At`` (one at most)."""
    ttl_text, expires_text = headers.get("stream-ttl"), headers.get("stream-expires-at")
    if ttl_text is not None and expires_text is not None:
        raise ProtocolError(400, "give Stream-TTL or Stream-Expires-At, not both")
    ttl = None if ttl_text is None else parse_ttl(ttl_text)
    return ttl, None if expires_text is None else parse_expires_at(expires_text)


def _flag(value: str | None) -> bool:
    """``Stream-Closed``: only ``true`` (any case) counts; other values are as if absent."""
    return value is not None and value.strip().lower() == "true"


def _same_time(a: float | None, b: float | None) -> bool:
    return a == b if a is None or b is None else abs(a - b) < 0.001  # noqa: PLR2004 - a millisecond


def _response(status: int, headers: Mapping[str, str], body: bytes = b"") -> ASGIResponse:
    return ASGIResponse(body=body, status_code=status, headers={**_SECURITY, **headers})


def _error(status: int, message: str, headers: Mapping[str, str]) -> ASGIResponse:
    reply = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", **headers}
    return _response(status, reply, message.encode())


def _http_error(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own errors on these routes (a body too large, a guard's 401) with the protocol's headers."""
    headers = {**_SECURITY, "Cache-Control": "no-store", **(exc.headers or {})}
    return Response(
        exc.detail.encode(), status_code=exc.status_code, headers=headers, media_type="text/plain"
    )


def durable_streams_router(
    plugin: ResumablePlugin,
    *,
    path: str,
    owner: Callable[..., Any] | None,
    guards: Sequence[Guard],
    settings: DurableSettings,
) -> Router:
    path = "/" + path.strip("/")
    routes = _Routes(plugin, path, owner, settings)

    @route(
        "/{name:path}",
        http_method=[HttpMethod.GET, HttpMethod.HEAD, HttpMethod.PUT, HttpMethod.POST, HttpMethod.DELETE],
        name="litestar_resumable:durable_streams",
        request_max_body_size=settings.max_append_bytes,
    )
    async def durable_stream(name: str, request: Request[Any, Any, Any]) -> ASGIResponse:
        return await routes.serve(name.lstrip("/"), request)

    return Router(
        path,
        route_handlers=[durable_stream],
        guards=list(guards),
        exception_handlers={HTTPException: _http_error},
    )
