"""``@resumable``: marks a streaming handler and turns it into a Litestar route function.

The decorated function stays the app author's async generator. What Litestar registers is a small
``async def`` with the same parameters (so path and query parameters, ``data``, ``request`` and
dependencies are injected as before) plus ``request`` and one dependency, ``resumable_plugin``, which
only :class:`ResumablePlugin` provides. A decorated route in an app without the plugin therefore fails at
startup, in Litestar's own check for missing dependencies, naming ``resumable_plugin``.

Everything else (starting, resuming, the plain mode) is the plugin's, so the route function does no work
of its own and cannot drift from the resume route.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, overload

from litestar import Request, Response
from litestar.di import Dependency
from litestar.handlers import BaseRouteHandler

from litestar_resumable._format import StreamFormat
from litestar_resumable._options import ConflictPolicy, OwnerFunction

if TYPE_CHECKING:
    from litestar_resumable._plugin import ResumablePlugin

__all__ = ("PLUGIN_PARAMETER", "RouteSpec", "resumable")

P = ParamSpec("P")
PLUGIN_PARAMETER = "resumable_plugin"


@dataclass(frozen=True)
class RouteSpec:
    """What ``@resumable`` knows about a route: its stable id, its key parameter and its overrides."""

    route_id: str
    function: Callable[..., Any]
    key: str | Callable[[dict[str, Any]], str] | None
    overrides: dict[str, Any] = field(default_factory=dict)

    def key_of(self, kwargs: dict[str, Any]) -> str | None:
        """The key of a request, from the handler's resolved arguments."""
        if self.key is None:
            return None
        return str(self.key(kwargs) if callable(self.key) else kwargs[self.key])

    @property
    def parameters(self) -> frozenset[str]:
        return frozenset(inspect.signature(self.function).parameters)


def _route_function(fn: Callable[..., Any], spec: RouteSpec) -> Callable[..., Awaitable[Response[Any]]]:
    signature = inspect.signature(fn)
    takes_request = "request" in signature.parameters

    async def route(**kwargs: Any) -> Response[Any]:
        plugin: ResumablePlugin = kwargs.pop(PLUGIN_PARAMETER)
        request: Request[Any, Any, Any] = kwargs["request"] if takes_request else kwargs.pop("request")
        return await plugin._serve(spec, request, kwargs)  # noqa: SLF001 - the plugin's own entry point

    functools.update_wrapper(route, fn)
    added = [inspect.Parameter(PLUGIN_PARAMETER, inspect.Parameter.KEYWORD_ONLY)]
    annotations: dict[str, Any] = {
        **fn.__annotations__,
        PLUGIN_PARAMETER: Annotated[Any, Dependency()],  # Litestar's NamedDependency[Any]
        "return": Response,
    }
    if not takes_request:
        added.append(inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY))
        annotations["request"] = Request
    parameters = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    rest = [p for p in signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    route.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*parameters, *added, *rest], return_annotation=Response
    )
    route.__annotations__ = annotations
    route.__resumable__ = spec  # type: ignore[attr-defined]
    return route


@overload
def resumable(fn: Callable[P, AsyncIterator[Any]], /) -> Callable[P, Awaitable[Response[Any]]]: ...


@overload
def resumable(
    *,
    enabled: bool | None = None,
    key: str | Callable[[dict[str, Any]], str] | None = None,
    ttl: float | None = None,
    heartbeat: float | None = None,
    retry: int | None = None,
    lease: float | None = None,
    on_conflict: ConflictPolicy | None = None,
    expose_errors: bool | None = None,
    max_batch: int | None = None,
    owner: OwnerFunction | None = None,
    max_event_bytes: int | None = None,
    max_events: int | None = None,
    max_followers: int | None = None,
    format: StreamFormat | None = None,
) -> Callable[[Callable[P, AsyncIterator[Any]]], Callable[P, Awaitable[Response[Any]]]]: ...


def resumable(
    fn: Callable[..., AsyncIterator[Any]] | None = None,
    /,
    *,
    enabled: bool | None = None,
    key: str | Callable[[dict[str, Any]], str] | None = None,
    ttl: float | None = None,
    heartbeat: float | None = None,
    retry: int | None = None,
    lease: float | None = None,
    on_conflict: ConflictPolicy | None = None,
    expose_errors: bool | None = None,
    max_batch: int | None = None,
    owner: OwnerFunction | None = None,
    max_event_bytes: int | None = None,
    max_events: int | None = None,
    max_followers: int | None = None,
    format: StreamFormat | None = None,  # noqa: A002 - the option's name, as users write it
) -> Any:
    """Make a streaming handler resumable. Use it under the route decorator, bare or with options.

    Options left as None take the plugin's defaults. ``key`` names a handler parameter (a chat id, say),
    or is a function of the handler's arguments (``lambda kw: kw["data"]["id"]``): at most one
    generation per key value is active; see ``on_conflict`` for what a second one does.
    """
    overrides = {
        "enabled": enabled,
        "ttl": ttl,
        "heartbeat": heartbeat,
        "retry": retry,
        "lease": lease,
        "on_conflict": on_conflict,
        "expose_errors": expose_errors,
        "max_batch": max_batch,
        "owner": owner,
        "max_event_bytes": max_event_bytes,
        "max_events": max_events,
        "max_followers": max_followers,
        "format": format,
    }

    def decorate(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., Awaitable[Response[Any]]]:
        if isinstance(fn, BaseRouteHandler):
            raise TypeError(
                "@resumable must go under the route decorator, next to the function: "
                "@get(...) first, then @resumable, then 'async def ...'"
            )
        if not inspect.isasyncgenfunction(fn):
            name = getattr(fn, "__qualname__", repr(fn))
            raise TypeError(
                f"@resumable needs an async generator function ('async def' with 'yield'); {name} is not one"
            )
        spec = RouteSpec(f"{fn.__module__}.{fn.__qualname__}", fn, key, overrides)
        if isinstance(key, str) and key not in spec.parameters:
            raise TypeError(
                f"@resumable(key={key!r}) on {fn.__qualname__}: the handler has no parameter {key!r}; "
                "key names the handler parameter whose value identifies the conversation"
            )
        return _route_function(fn, spec)

    return decorate if fn is None else decorate(fn)
