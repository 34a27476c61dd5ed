"""``ResumablePlugin``: wires resumable routes into a Litestar app, and the public methods.

At startup it reads every ``@resumable`` route's options, makes the route's dependencies with ``yield``
ones a generation can take over (``_handoff``), and adds the resume and cancel routes (``_resume_routes``).
Per request, a ``@resumable`` route function calls :meth:`ResumablePlugin.serve`, which the plugin's
:class:`StreamServer` (``_serving``) answers: it resumes or starts a generation, and either way follows
the stream.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Unpack

from litestar.di import Provide
from litestar.exceptions import ImproperlyConfiguredException
from litestar.plugins import InitPlugin, ReceiveRoutePlugin
from litestar.routes import HTTPRoute
from litestar.types import Empty

from litestar_resumable._errors import KeyConflictError, StoreUnavailableError
from litestar_resumable._events import OPENED_ROUTE
from litestar_resumable._format import StreamFormat
from litestar_resumable._generations import Generations
from litestar_resumable._handoff import Handoff, defer
from litestar_resumable._ids import is_stream_id, new_stream_id
from litestar_resumable._limits import Limits, SharedLimits, WorkerLimits
from litestar_resumable._observe import observer_for, timed
from litestar_resumable._options import RouteOptions, StreamOptions
from litestar_resumable._responses import owner_id, scoped_key, store_unavailable
from litestar_resumable._resume_routes import resume_router
from litestar_resumable._route import spec_of
from litestar_resumable._serving import StreamServer, key_conflict
from litestar_resumable._spec import PLUGIN_PARAMETER
from litestar_resumable._store.memory import MemoryStreamStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from litestar import Litestar, Request, Response
    from litestar.config.app import AppConfig
    from litestar.handlers import HTTPRouteHandler
    from litestar.routes import BaseRoute
    from litestar.types import Guard

    from litestar_resumable._events import StreamInfo
    from litestar_resumable._spec import RouteSpec
    from litestar_resumable._store.base import StreamStore

__all__ = ("ResumablePlugin",)


class ResumablePlugin(InitPlugin, ReceiveRoutePlugin):
    """Makes ``@resumable`` routes resumable and serves the resume and cancel routes.

    Args:
        store: Where streams live; ``None`` is a :class:`MemoryStreamStore` (one process). Use a
            :class:`RedisStreamStore` to share streams between workers and hosts.
        max_generations: Most generations running at once on this worker (with ``shared_limits``, on
            every worker that shares the store); None: no limit; more get 429.
        max_generations_per_owner: Most generations one owner runs at once, counted as
            ``max_generations``; more get 429.
        route_prefix: Where the resume and cancel routes live (``{prefix}/streams/{stream_id}``).
        guards: Litestar guards for the resume and cancel routes.
        shutdown_grace: Seconds generations get to finish at shutdown before they end ``interrupted``.
        shared_limits: Count ``max_generations``, ``max_generations_per_owner`` and each route's
            ``max_followers`` in the store, across every worker that shares it, not per worker.
        limits_ttl: With ``shared_limits``: seconds what a worker counts outlives it if it dies (it renews
            its counts every third of that).
        formats: Stream formats to render streams with that no route of this app names (streams written
            by another app or a worker); the formats of this app's routes are known already.
        metrics: Prometheus metrics (the ``metrics`` extra): True registers them on prometheus-client's
            default registry, which Litestar's ``PrometheusController`` serves; or pass a
            ``CollectorRegistry``. See docs/observability.md.
        tracing: OpenTelemetry spans, one per generation (the ``otel`` extra): True uses the global tracer
            provider; or pass a ``TracerProvider``.
        **defaults: Any option of :class:`StreamOptions`: the default of every route, which a route's
            ``@resumable(...)`` overrides.
    """

    def __init__(
        self,
        store: StreamStore | None = None,
        *,
        max_generations: int | None = None,
        max_generations_per_owner: int | None = None,
        route_prefix: str = "/resumable",
        guards: Sequence[Guard] | None = None,
        shutdown_grace: float = 10.0,
        shared_limits: bool = False,
        limits_ttl: float = 30.0,
        formats: Sequence[StreamFormat] = (),
        metrics: Any = False,
        tracing: Any = False,
        **defaults: Unpack[RouteOptions],
    ) -> None:
        self.store: StreamStore = store if store is not None else MemoryStreamStore()
        self.observer = observer_for(metrics=metrics, tracing=tracing)
        self.defaults = StreamOptions().merged(defaults)
        self.limits: Limits = (
            SharedLimits(
                self.store,
                max_generations=max_generations,
                max_generations_per_owner=max_generations_per_owner,
                ttl=limits_ttl,
            )
            if shared_limits
            else WorkerLimits(
                max_generations=max_generations, max_generations_per_owner=max_generations_per_owner
            )
        )
        self.generations = Generations(
            self.store, limits=self.limits, shutdown_grace=shutdown_grace, observer=self.observer
        )
        self.route_prefix = "/" + route_prefix.strip("/")
        self.guards = list(guards or [])
        self._server = StreamServer(
            self.store,
            generations=self.generations,
            limits=self.limits,
            observer=self.observer,
            defaults=self.defaults,
            formats=formats,
        )

    # -- wiring into Litestar --

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.lifespan.append(self._lifespan)
        app_config.exception_handlers.setdefault(StoreUnavailableError, store_unavailable)
        app_config.dependencies[PLUGIN_PARAMETER] = Provide(lambda: Handoff(self), sync_to_thread=False)
        app_config.route_handlers.append(
            resume_router(
                self._server,
                lambda stream_id, owner: self.cancel(stream_id, owner=owner),
                prefix=self.route_prefix,
                guards=self.guards,
            )
        )
        return app_config

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            spec = spec_of(handler.fn)
            if spec is None:
                continue
            try:
                options = self.defaults.merged(spec.overrides)
            except (TypeError, ValueError) as exc:
                raise ImproperlyConfiguredException(f"@resumable on {spec.route_id}: {exc}") from exc
            self._server.add_route(spec.route_id, options)
            _defer_cleanups(route, handler)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Litestar) -> AsyncIterator[None]:
        self.generations.reopen()
        try:
            yield
        finally:
            await self.shutdown()

    # -- the public API for app routes --

    def options_for(self, route_id: str) -> StreamOptions:
        """The settings of a ``@resumable`` route (the plugin's defaults for unknown routes)."""
        return self._server.options_for(route_id)

    async def stream_response(
        self, stream_id: str, *, last_event_id: str | None = None, owner: str | None = None
    ) -> Response[Any]:
        """Answer with a stream from the start, or after ``last_event_id``: SSE, 204 after the end, or 4xx.

        A stream started with an owner is served only to the same ``owner``; to anyone else it is 404.
        """
        requested_at = time.perf_counter()
        after = self._server.position_in(stream_id, last_event_id)
        return await self._server.open(
            stream_id,
            after,
            owner=owner_id(owner),
            route_id=None,
            resume=last_event_id is not None,
            requested_at=requested_at,
        )

    async def open_stream(
        self,
        *,
        key: str | None = None,
        owner: str | None = None,
        format: StreamFormat | None = None,  # noqa: A002 - the option's name
        ttl: float | None = None,
        lease: float | None = None,
    ) -> str:
        """Create a running stream for a writer elsewhere (a job queue's worker) and return its id.

        The writer takes it over with ``StreamWriter`` or ``SyncStreamWriter``; if none does within
        ``lease`` seconds (the plugin's by default), readers end it ``interrupted``. ``key`` is claimed as a
        ``@resumable`` route claims it, with the plugin's ``on_conflict`` (409 for a running key with
        ``"reject"``). Follow the stream with :meth:`stream_response`. Such streams run in no process of
        the web tier, so ``max_generations`` and ``max_generations_per_owner`` do not count them: the job
        queue's own concurrency bounds them.
        """
        owner = owner_id(owner)
        options = self.defaults.merged(
            {
                name: value
                for name, value in (("format", format), ("ttl", ttl), ("lease", lease))
                if value is not None
            }  # type: ignore[arg-type]  # the names are options'
        )
        self._server.formats.setdefault(options.format.name, options.format)
        stream_id = new_stream_id(None if key is None else scoped_key(key, owner))
        try:
            await timed(
                self.observer,
                "create",
                self.store.create(
                    stream_id,
                    route=OPENED_ROUTE,
                    key=None if key is None else scoped_key(key, owner),
                    owner=owner,
                    format=options.format.name,
                    lease=options.lease,
                    ttl=options.ttl,
                    on_conflict=options.on_conflict,
                    claimed=False,
                ),
            )
        except KeyConflictError as exc:
            raise key_conflict(key, exc) from exc
        return stream_id

    async def active_stream_id(self, key: str, *, owner: str | None = None) -> str | None:
        """The id of ``owner``'s running generation for ``key``, or None."""
        owner = owner_id(owner)
        stream_id = await self.store.key_holder(scoped_key(key, owner))
        if stream_id is None:
            return None
        info = await self.store.finish(stream_id, "interrupted", only_if_lease_expired=True)
        return stream_id if info is not None and info.is_running and info.owner == owner else None

    async def cancel(self, stream_id: str, *, owner: str | None = None) -> StreamInfo | None:
        """End a running generation as ``cancelled`` (on any worker); None if unknown (or not ``owner``'s)."""
        if not is_stream_id(stream_id):
            return None
        return await self.generations.cancel(stream_id, owner_id(owner))

    async def shutdown(self) -> None:
        """Stop taking generations, let producers finish for ``shutdown_grace`` s, then interrupt them."""
        await self.generations.shutdown()
        await self.limits.close()
        await self.store.close()

    # -- serving a @resumable route --

    async def serve(
        self,
        spec: RouteSpec,
        request: Request[Any, Any, Any],
        handoff: Handoff,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Response[Any]:
        """Answer a request to a ``@resumable`` route: resume, start a generation, or a plain stream."""
        return await self._server.serve(spec, request, handoff, args, kwargs)


def _defer_cleanups(route: HTTPRoute, handler: HTTPRouteHandler) -> None:
    """Make the handler's dependencies with ``yield`` ones whose cleanup a generation takes over."""
    resolved = handler.resolve_dependencies()
    deferred = {
        name: defer(provider)
        for name, provider in resolved.items()
        if name != PLUGIN_PARAMETER
        and (provider.has_async_generator_dependency or provider.has_sync_generator_dependency)
        and not getattr(provider.dependency, "__resumable_deferred__", False)
    }
    if not deferred:
        return
    handler.dependencies = {**(handler.dependencies or {}), **deferred}
    # Litestar caches a handler's resolved dependencies and builds its kwargs model before plugins see the
    # route: resolve again, with ours, and rebuild the model.
    handler._resolved_dependencies = Empty  # noqa: SLF001
    handler.resolve_dependencies()
    model = handler.create_kwargs_model(path_parameters=route.path_parameters)
    for method in handler.http_methods:
        route.route_handler_map[method] = (handler, model)
