"""The Durable Streams routes: each protocol request answered from the plugin's store.

One route (``{path}/{name:path}``, every method) serves two kinds of stream:

- **durable streams**, created with ``PUT`` and written with ``POST`` by any client (``StreamStore`` keeps
  their protocol state: ``create_durable``, ``append_durable``, ``read_durable``, ``delete_durable``). Their
  names are per owner, as keys are (``_responses.scoped_key``), so one user's ``chat-1`` is not another's;
- **streams of ``@resumable`` routes** (and of ``StreamWriter`` / ``SyncStreamWriter``), read by stream id:
  ``GET`` and ``HEAD`` only, as ``application/json`` streams of their events, closed by their terminal
  event, and served only to their owner (the owner function of the stream's route), as the plugin's own
  resume route does.

Here are the write handlers (``PUT``, ``POST``, ``DELETE``) and the router; the reads are
``_durable_reads``'s, the streams read ``_durable_sources``'s, the settings, header parsing and responses
(with the protocol's security headers) ``_durable_http``'s.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from litestar import Request, Router, route
from litestar.enums import HttpMethod
from litestar.exceptions import HTTPException
from litestar.response.base import ASGIResponse  # noqa: TC002 - Litestar reads the handler's annotations

from litestar_resumable._durable import (
    NOW,
    ProtocolError,
    events_of,
    first_part,
    is_data,
    offset_of,
    parse_count,
    parse_offset,
)
from litestar_resumable._durable_http import (
    DurableSettings,
    appended_response,
    error_response,
    expiry_of,
    http_error,
    producer_of,
    respond,
    same_time,
    stream_closed,
)
from litestar_resumable._durable_reads import DurableReads
from litestar_resumable._errors import StoreUnavailableError, StreamLimitError
from litestar_resumable._ids import is_stream_id, new_stream_id
from litestar_resumable._store.durable_types import DURABLE_FORMAT, DurableStream, Fork, media_type

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping, Sequence

    from litestar.types import Guard

    from litestar_resumable._plugin import ResumablePlugin

__all__ = ("durable_streams_router",)

logger = logging.getLogger("litestar_resumable")

_DEFAULT_TYPE = "application/octet-stream"
_DURABLE_ID_SUFFIX = "-d"  # 28 characters: never a stream id of the plugin's routes (26)


class _Routes(DurableReads):
    def __init__(
        self, plugin: ResumablePlugin, path: str, owner: Callable[..., Any] | None, settings: DurableSettings
    ) -> None:
        super().__init__(plugin, owner, settings)
        self.path = path

    async def serve(self, name: str, request: Request[Any, Any, Any]) -> ASGIResponse:
        handlers: dict[str, Callable[[str, Request[Any, Any, Any]], Awaitable[ASGIResponse]]] = {
            "PUT": self.put,
            "POST": self.post,
            "DELETE": self.delete,
            "HEAD": self.head,
        }
        if not name:
            return error_response(404, "name a stream: the path after the mount point", {})
        try:
            return await handlers.get(request.method, self.get)(name, request)
        except ProtocolError as exc:
            return error_response(exc.status, exc.message, exc.headers)
        except StoreUnavailableError as exc:
            logger.warning("%s %s: %s", request.method, request.url.path, exc)
            return error_response(
                503, "the stream store is unavailable; try again shortly", {"Retry-After": "1"}
            )

    async def _unwritable(self, name: str, request: Request[Any, Any, Any]) -> ProtocolError:
        """404 for an unknown stream; 405 for a ``@resumable`` stream, which only its generation writes."""
        try:
            await self.find(name, request)
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
        ttl, expires_at = expiry_of(headers)
        close = stream_closed(headers.get("stream-closed"))
        fork, source, data = await self._fork(headers, request)
        if source is not None:
            if content_type is not None and media_type(content_type) != media_type(source.content_type):
                raise ProtocolError(409, "a fork has its source's content type")
            content_type = content_type or source.content_type
            if ttl is None and expires_at is None:  # a fork without an expiry of its own takes its source's
                ttl, expires_at = source.ttl, source.expires_at
        content_type = content_type or _DEFAULT_TYPE
        data = [*data, *events_of(await request.body(), content_type, create=True)]
        scoped = await self.scoped(name, request)
        await self._not_a_resumable_id(name, scoped)
        try:
            created, state = await self.store.create_durable(
                new_stream_id(scoped) + _DURABLE_ID_SUFFIX,
                name=scoped,
                content_type=content_type,
                data=data,
                close=close,
                owner=await self.requester(request),
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
            and same_time(state.expires_at, expires_at)
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
        return respond(201 if created else 200, reply)

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
                await self.scoped(source_name.removeprefix(prefix), request)
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
        close = stream_closed(headers.get("stream-closed"))
        producer = producer_of(headers)
        body = await request.body()
        content_type = headers.get("content-type") or ""
        if not body and not close:
            raise ProtocolError(400, "an append needs a body (or Stream-Closed: true to close the stream)")
        if body and not content_type:
            raise ProtocolError(400, "an append needs a Content-Type")
        # Parsed by the type the client says; the store compares it with the stream's.
        data = events_of(body, content_type, create=False)
        stream_id = await self.durable_id(name, request)
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
        return appended_response(result, producer, has_data=bool(data))

    async def delete(self, name: str, request: Request[Any, Any, Any]) -> ASGIResponse:
        stream_id = await self.durable_id(name, request)
        if stream_id is None:
            raise await self._unwritable(name, request)
        if not await self.store.delete_durable(stream_id):
            state, _ = await self.store.read_durable(stream_id, 0, limit=0, touch=False)
            if state is not None and state.deleted:
                raise ProtocolError(410, "the stream was deleted (it is kept for the streams forked from it)")
            raise ProtocolError(404, f"no stream {name!r}")
        return respond(204, {})


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
        exception_handlers={HTTPException: http_error},
    )
