"""Answering the requests for streams: a ``@resumable`` route's request, and a stream from a position.

:class:`StreamServer` keeps what the plugin learnt at startup (each route's options, the formats known) and
answers a request to a ``@resumable`` route: it either resumes (the request names a position:
``Last-Event-ID`` or ``last_event_id``) or starts a generation (``_generations``). The resume route and
``ResumablePlugin.stream_response`` open a stream at a position the same way. Either way the answer is a
follower of the stream (``_follow``), so the first request, a reconnect and a viewer on another worker
read the same stored events the same way.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any

from litestar import Request, Response
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.status_codes import HTTP_204_NO_CONTENT, HTTP_409_CONFLICT

from litestar_resumable._errors import KeyConflictError
from litestar_resumable._follow import sse_response
from litestar_resumable._format import StreamFormat, format_named
from litestar_resumable._ids import is_stream_id
from litestar_resumable._responses import (
    checked_event_id,
    owner_of,
    plain_response,
    resume_position,
    scoped_key,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from litestar_resumable._generations import Generations
    from litestar_resumable._handoff import Handoff
    from litestar_resumable._limits import Limits
    from litestar_resumable._observe import Observer, ResumeKind
    from litestar_resumable._options import StreamOptions
    from litestar_resumable._spec import RouteSpec
    from litestar_resumable._store.base import StreamStore

__all__ = ("StreamServer", "key_conflict")


class StreamServer:
    """Serves the streams of one plugin: starts generations, resumes and follows streams."""

    def __init__(
        self,
        store: StreamStore,
        *,
        generations: Generations,
        limits: Limits,
        observer: Observer,
        defaults: StreamOptions,
        formats: Sequence[StreamFormat],
    ) -> None:
        self.store = store
        self.generations = generations
        self.limits = limits
        self.observer = observer
        self.defaults = defaults
        self.routes: dict[str, StreamOptions] = {}
        self.formats: dict[str, StreamFormat] = {}
        for stream_format in (defaults.format, StreamFormat(), *formats):
            self.formats.setdefault(stream_format.name, stream_format)

    def add_route(self, route_id: str, options: StreamOptions) -> None:
        """A ``@resumable`` route and its options (its format is known from then on)."""
        self.routes[route_id] = options
        self.formats.setdefault(options.format.name, options.format)

    def options_for(self, route_id: str) -> StreamOptions:
        """The settings of a ``@resumable`` route (the plugin's defaults for unknown routes)."""
        return self.routes.get(route_id, self.defaults)

    async def serve(
        self,
        spec: RouteSpec,
        request: Request[Any, Any, Any],
        handoff: Handoff,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Response[Any]:
        """Answer a request to a ``@resumable`` route: resume, start a generation, or a plain stream."""
        requested_at = time.perf_counter()
        options = self.options_for(spec.route_id)
        if not options.enabled:
            handoff.take(request)
            return plain_response(spec.function(*args, **kwargs), handoff)
        owner = await owner_of(options, request)
        position = resume_position(request)
        if position is not None:
            stream_id, after = checked_event_id(position)
            return await self.open(
                stream_id, after, owner=owner, route_id=spec.route_id, resume=True, requested_at=requested_at
            )
        try:
            raw_key = spec.key_of(kwargs)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ClientException(
                f"the request does not name this route's key ({type(exc).__name__} reading it)"
            ) from exc
        try:
            stream_id = await self.generations.start(
                route=spec.route_id,
                options=options,
                generator=lambda: spec.function(*args, **kwargs),
                key=None if raw_key is None else scoped_key(raw_key, owner),
                owner=owner,
                release=handoff.release,
            )
        except KeyConflictError as exc:
            raise key_conflict(raw_key, exc) from exc
        handoff.take(request)
        return await self._follower(
            stream_id, 0, options, options.format, route=spec.route_id, requested_at=requested_at
        )

    @staticmethod
    def position_in(stream_id: str, last_event_id: str | None) -> int:
        """The position ``last_event_id`` names in ``stream_id`` (0 for None); 400 for another stream's."""
        if last_event_id is None:
            return 0
        id_stream, after = checked_event_id(last_event_id)
        if id_stream != stream_id:
            raise ClientException("Last-Event-ID belongs to another stream than the one requested")
        return after

    async def requester(self, stream_id: str, request: Request[Any, Any, Any]) -> str | None:
        """Who asks for a stream, as the owner function of the stream's route says (None without one)."""
        info = await self.store.info(stream_id) if is_stream_id(stream_id) else None
        if info is not None:
            return await owner_of(self.options_for(info.route), request)
        # Unknown: run an owner function all the same, so that its failures (401, say) cannot tell
        # existing stream ids from unknown ones.
        owners = [self.defaults, *self.routes.values()]
        return await owner_of(next((o for o in owners if o.owner is not None), self.defaults), request)

    async def open(
        self,
        stream_id: str,
        after: int,
        *,
        owner: str | None,
        route_id: str | None,
        resume: bool,
        requested_at: float,
    ) -> Response[Any]:
        """Follow a stream from ``after``; ``resume``: the request resumes it (a position, or the resume
        route), which the metrics count."""
        info = await self.store.info(stream_id) if is_stream_id(stream_id) else None
        # Another owner's stream is as unknown as a missing one (or an id of another shape), so ids cannot
        # be probed.
        if info is None or info.owner != owner or (route_id is not None and info.route != route_id):
            raise NotFoundException(f"unknown or expired stream {stream_id}")
        if after > info.last_position:
            raise ClientException(
                f"position {after} is ahead of stream {stream_id}, which has {info.last_position} events"
            )
        if not info.is_running and after == info.last_position:
            if resume:
                self.observer.resumed(stream_id, info.route, "after_end", after, info.last_position)
            return Response(None, status_code=HTTP_204_NO_CONTENT)
        if resume:
            kind: ResumeKind = "last_event_id" if after else "replay"
            self.observer.resumed(stream_id, info.route, kind, after, info.last_position)
        stream_format = self.formats.get(info.format) or format_named(info.format) or self.defaults.format
        options = self.options_for(info.route)
        if info.lease > 0 and info.lease != options.lease:
            # Its writer's lease, not the route's: an opened stream's is its own, and the route's may have
            # changed since the stream began. Readers check it every half lease.
            options = dataclasses.replace(options, lease=info.lease)
        return await self._follower(
            stream_id,
            after,
            options,
            stream_format,
            route=info.route,
            requested_at=requested_at,
        )

    async def _follower(
        self,
        stream_id: str,
        after: int,
        options: StreamOptions,
        stream_format: StreamFormat,
        *,
        route: str,
        requested_at: float,
    ) -> Response[Any]:
        hold = await self.limits.admit_follower(stream_id, options.max_followers)
        return sse_response(
            self.store,
            stream_id,
            after,
            options,
            stream_format,
            observer=self.observer,
            route=route,
            requested_at=requested_at,
            on_close=hold.release,
        )


def key_conflict(key: object, exc: KeyConflictError) -> HTTPException:
    """The 409 for a key whose generation is running, with the running stream's id."""
    return HTTPException(
        status_code=HTTP_409_CONFLICT,
        detail=f"a generation for {key!r} is already running; resume it or cancel it first",
        extra={"stream_id": exc.stream_id},
    )
