"""``ResumablePlugin``: routes, settings, and the lifetimes of the producers.

The plugin is the one owner of generations. A request to a ``@resumable`` route either resumes (it
names a position: ``Last-Event-ID`` or ``last_event_id``) or starts one: the plugin claims the route's
key if it has one, creates the stream in the store, starts a :class:`Producer` task it keeps until the
generator ends, and answers with a follower of the new stream. Every response is a follower, so the
first request, a reconnect and a viewer on another worker read the same stored events the same way.

Shutdown is bounded: no new generations; producers get ``shutdown_grace`` seconds to finish, are then
cancelled, and every stream this process still produces ends with the ``interrupted`` terminal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import Counter
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, Router, delete, get
from litestar.di import Provide
from litestar.exceptions import (
    ClientException,
    HTTPException,
    ImproperlyConfiguredException,
    NotFoundException,
    ServiceUnavailableException,
    TooManyRequestsException,
)
from litestar.plugins import InitPlugin, ReceiveRoutePlugin
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.routes import HTTPRoute
from litestar.status_codes import HTTP_202_ACCEPTED, HTTP_204_NO_CONTENT, HTTP_409_CONFLICT

from litestar_resumable._events import StreamEvent, StreamInfo, encode_item, encode_sse, terminal_data
from litestar_resumable._follow import EncodedEvents, sse_response
from litestar_resumable._ids import MalformedIdError, new_stream_id, parse_event_id, parse_stream_id
from litestar_resumable._options import ConflictPolicy, OwnerFunction, StreamOptions
from litestar_resumable._producer import Producer
from litestar_resumable._route import PLUGIN_PARAMETER, RouteSpec
from litestar_resumable._store.base import StoreUnavailableError, StreamStore
from litestar_resumable._store.memory import MemoryStreamStore

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Sequence

    from litestar import Litestar
    from litestar.config.app import AppConfig
    from litestar.routes import BaseRoute
    from litestar.types import Guard

__all__ = ("ResumablePlugin",)

logger = logging.getLogger("litestar_resumable")

_KEY_CLAIM_ATTEMPTS = 8
_KEY_TTL_MARGIN = 24 * 3600.0  # a key entry outlives any sane generation; ended ones remove theirs
_STOP_TIMEOUT = 5.0


def _resume_position(request: Request[Any, Any, Any]) -> str | None:
    """The event id a request resumes after: the ``Last-Event-ID`` header, else ``last_event_id``."""
    value = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    return value or None


class ResumablePlugin(InitPlugin, ReceiveRoutePlugin):
    """Makes ``@resumable`` routes resumable and serves the resume and cancel routes."""

    def __init__(
        self,
        store: StreamStore | None = None,
        *,
        enabled: bool = True,
        ttl: float = 3600.0,
        heartbeat: float = 15.0,
        retry: int = 1000,
        lease: float = 10.0,
        on_conflict: ConflictPolicy = "cancel",
        expose_errors: bool = False,
        max_batch: int = 512,
        owner: OwnerFunction | None = None,
        max_event_bytes: int = 1024 * 1024,
        max_events: int = 100_000,
        max_followers: int = 1000,
        max_generations: int | None = None,
        max_generations_per_owner: int | None = None,
        route_prefix: str = "/resumable",
        guards: Sequence[Guard] | None = None,
        shutdown_grace: float = 10.0,
    ) -> None:
        self.store: StreamStore = store if store is not None else MemoryStreamStore()
        self.defaults = StreamOptions(
            enabled=enabled,
            ttl=ttl,
            heartbeat=heartbeat,
            retry=retry,
            lease=lease,
            on_conflict=on_conflict,
            expose_errors=expose_errors,
            max_batch=max_batch,
            owner=owner,
            max_event_bytes=max_event_bytes,
            max_events=max_events,
            max_followers=max_followers,
        )
        for name, limit in (
            ("max_generations", max_generations),
            ("max_generations_per_owner", max_generations_per_owner),
        ):
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be at least 1 (or None for no limit), got {limit!r}")
        if shutdown_grace < 0:
            raise ValueError(f"shutdown_grace must be >= 0 seconds, got {shutdown_grace!r}")
        self.max_generations = max_generations
        self.max_generations_per_owner = max_generations_per_owner
        self.route_prefix = "/" + route_prefix.strip("/")
        self.guards = list(guards or [])
        self.shutdown_grace = shutdown_grace
        self._routes: dict[str, StreamOptions] = {}
        self._producers: dict[str, Producer] = {}
        self._followers: Counter[str] = Counter()
        self._closing = False

    # -- wiring into Litestar --

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.lifespan.append(self._lifespan)
        app_config.exception_handlers.setdefault(StoreUnavailableError, _store_unavailable)
        app_config.dependencies[PLUGIN_PARAMETER] = Provide(self._provide, sync_to_thread=False)
        app_config.route_handlers.append(self._router())
        return app_config

    def _provide(self) -> ResumablePlugin:
        return self

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            spec: RouteSpec | None = getattr(handler.fn, "__resumable__", None)
            if spec is None:
                continue
            try:
                self._routes[spec.route_id] = self.defaults.merged(spec.overrides)
            except ValueError as exc:
                raise ImproperlyConfiguredException(f"@resumable on {spec.route_id}: {exc}") from exc

    def _router(self) -> Router:
        plugin = self

        @get("/streams/{stream_id:str}", name="litestar_resumable:resume")
        async def resume_stream(stream_id: str, request: Request[Any, Any, Any]) -> Response[Any]:
            """Replay a stream from the start or from ``Last-Event-ID``, then follow it live."""
            stream_id = _checked_stream_id(stream_id)
            owner = await plugin._requester(stream_id, request)
            return await plugin.stream_response(
                stream_id, last_event_id=_resume_position(request), owner=owner
            )

        @delete("/streams/{stream_id:str}", name="litestar_resumable:cancel", status_code=HTTP_202_ACCEPTED)
        async def cancel_stream(stream_id: str, request: Request[Any, Any, Any]) -> dict[str, str]:
            """Cancel a generation, wherever it runs; its followers get the ``cancelled`` terminal event."""
            stream_id = _checked_stream_id(stream_id)
            owner = await plugin._requester(stream_id, request)
            info = await plugin.cancel(stream_id, owner=owner)
            if info is None:
                raise NotFoundException(f"unknown or expired stream {stream_id}")
            return {"stream_id": stream_id, "status": info.status}

        return Router(self.route_prefix, route_handlers=[resume_stream, cancel_stream], guards=self.guards)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        self._closing = False
        try:
            yield
        finally:
            await self.shutdown()

    # -- the public API for app routes --

    def options_for(self, route_id: str) -> StreamOptions:
        """The settings of a ``@resumable`` route (plugin defaults for unknown routes)."""
        return self._routes.get(route_id, self.defaults)

    async def stream_response(
        self, stream_id: str, *, last_event_id: str | None = None, owner: str | None = None
    ) -> Response[Any]:
        """Answer with a stream from the start, or after ``last_event_id``: SSE, 204 after the end, or 4xx.

        A stream started with an owner is served only to the same ``owner``; to anyone else it is 404.
        """
        owner = _owner_id(owner)
        stream_id = _checked_stream_id(stream_id)
        after = 0
        if last_event_id is not None:
            id_stream, after = _checked_event_id(last_event_id)
            if id_stream != stream_id:
                raise ClientException("Last-Event-ID belongs to another stream than the one requested")
        return await self._open(stream_id, after, owner=owner, route_id=None)

    async def active_stream_id(self, key: str, *, owner: str | None = None) -> str | None:
        """The id of ``owner``'s running generation for ``key``, or None."""
        owner = _owner_id(owner)
        stream_id = await self.store.get_key(_scoped_key(key, owner))
        if stream_id is None:
            return None
        info = await self._live_info(stream_id)
        return stream_id if info is not None and info.is_running and info.owner == owner else None

    async def cancel(self, stream_id: str, *, owner: str | None = None) -> StreamInfo | None:
        """End a running generation as ``cancelled`` (on any worker); None if unknown (or not ``owner``'s)."""
        owner = _owner_id(owner)
        info = await self.store.info(stream_id)
        if info is None or info.owner != owner:
            return None
        if info.is_running:
            info = await self.store.finish(stream_id, "cancelled", terminal_data("cancelled"))
        producer = self._producers.get(stream_id)
        if producer is not None:
            producer.stop("cancelled")
        return info

    async def shutdown(self) -> None:
        """Stop taking generations, let producers finish for ``shutdown_grace`` s, then interrupt them."""
        self._closing = True
        producers = list(self._producers.values())
        if producers:
            _, late = await asyncio.wait([p.task for p in producers], timeout=self.shutdown_grace)
            for producer in producers:
                if producer.task in late:
                    producer.stop("interrupted")
            if late:
                await asyncio.wait(late, timeout=_STOP_TIMEOUT)
            for producer in producers:
                with contextlib.suppress(Exception):
                    await self.store.finish(producer.stream_id, "interrupted", terminal_data("interrupted"))
        await self.store.close()

    # -- serving a @resumable route --

    async def _serve(
        self, spec: RouteSpec, request: Request[Any, Any, Any], kwargs: dict[str, Any]
    ) -> Response[Any]:
        options = self.options_for(spec.route_id)
        if not options.enabled:
            return _plain_response(spec.function(**kwargs))
        owner = await _owner_of(options, request)
        position = _resume_position(request)
        if position is not None:
            stream_id, after = _checked_event_id(position)
            return await self._open(stream_id, after, owner=owner, route_id=spec.route_id)
        return await self._start(spec, options, kwargs, owner)

    async def _requester(self, stream_id: str, request: Request[Any, Any, Any]) -> str | None:
        """Who asks for a stream, as the owner function of the stream's route says (None without one)."""
        info = await self.store.info(stream_id)
        if info is not None:
            return await _owner_of(self.options_for(info.route), request)
        # Unknown: run an owner function all the same, so that its failures (401, say) cannot tell
        # existing stream ids from unknown ones.
        owners = [self.defaults, *self._routes.values()]
        return await _owner_of(next((o for o in owners if o.owner is not None), self.defaults), request)

    async def _start(
        self, spec: RouteSpec, options: StreamOptions, kwargs: dict[str, Any], owner: str | None
    ) -> Response[Any]:
        if self._closing:
            raise ServiceUnavailableException("the server is shutting down; try again shortly")
        stream_id = new_stream_id()
        try:
            raw_key = spec.key_of(kwargs)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ClientException(
                f"the request does not name this route's key ({type(exc).__name__} reading it)"
            ) from exc
        key = None if raw_key is None else _scoped_key(raw_key, owner)
        replaced = (
            None
            if key is None or raw_key is None
            else await self._claim_key(key, raw_key, stream_id, options)
        )
        try:
            # A generation that replaces a running one of the same key does not count against the limits.
            self._check_generation_limits(owner, replacing=replaced)
        except TooManyRequestsException:
            if key is not None:
                ttl = options.lease + options.ttl + _KEY_TTL_MARGIN
                await _quietly(self.store.compare_and_set_key(key, stream_id, replaced, ttl=ttl))
            raise
        try:
            await self.store.create(
                stream_id, route=spec.route_id, key=key, lease=options.lease, ttl=options.ttl, owner=owner
            )
        except ValueError:
            # "exists already": ids are 128 random bits, so this is our own create, run by the store
            # and retried by its client after a lost reply (redis-py retries commands when so set up).
            logger.info("stream %s was created by an earlier attempt of the same call", stream_id)
        except StoreUnavailableError:
            if key is not None:
                await _quietly(self.store.compare_and_set_key(key, stream_id, None, ttl=0))
            raise
        self._producers[stream_id] = Producer(
            self.store,
            stream_id,
            spec.function(**kwargs),
            options,
            on_exit=self._producer_exited,
            owner=owner,
        )
        if replaced is not None:
            await self.cancel(replaced, owner=owner)
        return self._follower(stream_id, 0, options)

    def _check_generation_limits(self, owner: str | None, *, replacing: str | None) -> None:
        producers = [p for stream_id, p in self._producers.items() if stream_id != replacing]
        if self.max_generations is not None and len(producers) >= self.max_generations:
            raise TooManyRequestsException(
                f"this worker runs max_generations ({self.max_generations}) generations; try again later"
            )
        if owner is not None and self.max_generations_per_owner is not None:
            running = sum(1 for producer in producers if producer.owner == owner)
            if running >= self.max_generations_per_owner:
                raise TooManyRequestsException(
                    f"you run max_generations_per_owner ({self.max_generations_per_owner}) generations; "
                    "wait for one to end or cancel one"
                )

    def _follower(self, stream_id: str, after: int, options: StreamOptions) -> Response[Any]:
        if self._followers[stream_id] >= options.max_followers:
            raise TooManyRequestsException(
                f"stream {stream_id} has max_followers ({options.max_followers}) readers on this worker; "
                "try again later"
            )
        return sse_response(self.store, stream_id, after, options, followers=self._followers)

    async def _producer_exited(self, producer: Producer) -> None:
        self._producers.pop(producer.stream_id, None)
        info = await _quietly(self.store.info(producer.stream_id))
        if info is not None and info.key is not None:
            await _quietly(self.store.compare_and_set_key(info.key, producer.stream_id, None, ttl=0))

    async def _claim_key(
        self, key: str, shown_key: str, stream_id: str, options: StreamOptions
    ) -> str | None:
        """Make ``stream_id`` the key's active stream; return the running one it replaces, if any."""
        for _ in range(_KEY_CLAIM_ATTEMPTS):
            holder = await self.store.get_key(key)
            info = None if holder is None else await self._live_info(holder)
            running = info is not None and info.is_running
            if running and options.on_conflict == "reject":
                raise HTTPException(
                    status_code=HTTP_409_CONFLICT,
                    detail=f"a generation for {shown_key!r} is already running; resume it or cancel it first",
                    extra={"stream_id": holder},
                )
            ttl = options.lease + options.ttl + _KEY_TTL_MARGIN
            if await self.store.compare_and_set_key(key, holder, stream_id, ttl=ttl):
                return holder if running else None
        raise ServiceUnavailableException(f"too many concurrent generations for {shown_key!r}; try again")

    async def _live_info(self, stream_id: str) -> StreamInfo | None:
        """A stream's info, after ending it as interrupted if its producer's lease has run out."""
        info = await self.store.info(stream_id)
        if info is not None and info.is_running:
            info = await self.store.finish(
                stream_id, "interrupted", terminal_data("interrupted"), only_if_lease_expired=True
            )
        return info

    async def _open(
        self, stream_id: str, after: int, *, owner: str | None, route_id: str | None
    ) -> Response[Any]:
        info = await self.store.info(stream_id)
        # Another owner's stream is as unknown as a missing one, so ids cannot be probed.
        if info is None or info.owner != owner or (route_id is not None and info.route != route_id):
            raise NotFoundException(f"unknown or expired stream {stream_id}")
        if after > info.last_position:
            raise ClientException(
                f"position {after} is ahead of stream {stream_id}, which has {info.last_position} events"
            )
        if not info.is_running and after == info.last_position:
            return Response(None, status_code=HTTP_204_NO_CONTENT)
        return self._follower(stream_id, after, self.options_for(info.route))


def _store_unavailable(request: Request[Any, Any, Any], exc: StoreUnavailableError) -> Response[Any]:
    logger.warning("%s %s: %s", request.method, request.url.path, exc)
    detail = "the stream store is unavailable; try again shortly"
    return Response({"status_code": 503, "detail": detail}, status_code=503, headers={"Retry-After": "1"})


def _scoped_key(key: str, owner: str | None) -> str:
    """Keys are per owner: two users' chat 42 are two chats. The owner is length-prefixed, so no key
    (whatever characters it holds) can pose as another owner's."""
    return f"-:{key}" if owner is None else f"{len(owner)}:{owner}:{key}"


async def _owner_of(options: StreamOptions, request: Request[Any, Any, Any]) -> str | None:
    if options.owner is None:
        return None
    owner = options.owner(request)
    if inspect.isawaitable(owner):
        owner = await owner
    return _owner_id(owner)


def _owner_id(owner: object) -> str | None:
    """Owner ids are strings, whatever the app hands us (an int user id, say)."""
    return None if owner is None else str(owner)


def _checked_stream_id(value: str) -> str:
    try:
        return parse_stream_id(value)
    except MalformedIdError as exc:
        raise ClientException(str(exc)) from exc


def _checked_event_id(value: str) -> tuple[str, int]:
    try:
        return parse_event_id(value)
    except MalformedIdError as exc:
        raise ClientException(str(exc)) from exc


def _plain_response(generator: AsyncGenerator[Any, None]) -> ServerSentEvent:
    """The route as a plain SSE stream: the handler runs in the request, events have no ids."""

    async def body() -> AsyncIterator[ServerSentEventMessage]:
        async for item in generator:
            event, data = encode_item(item)
            yield EncodedEvents(encode_sse(None, [StreamEvent(0, data, event)]))

    return ServerSentEvent(body(), headers={"Cache-Control": "no-cache, no-transform"})


async def _quietly(awaitable: Any) -> Any:
    try:
        return await awaitable
    except Exception:
        logger.warning("store call failed during cleanup", exc_info=True)
        return None
