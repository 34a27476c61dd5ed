"""``@resumable``: marks a streaming handler and turns it into a Litestar route function.

The decorated function stays the app author's async generator. What Litestar registers is a small
``async def`` with the same parameters (so path and query parameters, ``data``, ``request``, dependencies
and, on a ``Controller``, ``self`` are passed as before) plus ``request`` and one dependency,
``resumable_plugin``, which only :class:`ResumablePlugin` provides (see ``_spec``). Everything else
(starting, resuming, the plain mode) is the plugin's, so the route function does no work of its own and
cannot drift from the resume route.

Shapes that cannot work fail when the module is imported, with a message that says what to do: the
decorator above the route decorator, a function that is not an async generator function, a ``key`` that
names no parameter, an unknown option.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, Unpack, overload

from litestar import Request, Response
from litestar.di import Dependency
from litestar.handlers import BaseRouteHandler

from litestar_resumable._options import OPTION_NAMES, RouteOptions
from litestar_resumable._spec import PLUGIN_PARAMETER, KeyFunction, RouteSpec, with_parameter

if TYPE_CHECKING:
    from litestar_resumable._handoff import Handoff

__all__ = ("resumable",)

P = ParamSpec("P")


def _route_function(fn: Callable[..., Any], spec: RouteSpec) -> Callable[..., Awaitable[Response[Any]]]:
    signature = inspect.signature(fn)
    takes_request = "request" in signature.parameters

    # Positional arguments are ``self`` of a Controller method: Litestar binds the route function to the
    # controller instance as it would have bound the handler.
    async def route(*args: Any, **kwargs: Any) -> Response[Any]:
        handoff: Handoff = kwargs.pop(PLUGIN_PARAMETER)
        request: Request[Any, Any, Any] = kwargs["request"] if takes_request else kwargs.pop("request")
        return await handoff.server.serve(spec, request, handoff, args, kwargs)

    functools.update_wrapper(route, fn)
    added = (PLUGIN_PARAMETER,) if takes_request else (PLUGIN_PARAMETER, "request")
    route.__signature__ = with_parameter(signature, *added).replace(  # type: ignore[attr-defined]
        return_annotation=Response
    )
    route.__annotations__ = {
        **fn.__annotations__,
        PLUGIN_PARAMETER: Annotated[Any, Dependency()],  # Litestar's NamedDependency[Any]
        "request": fn.__annotations__.get("request", Request),
        "return": Response,
    }
    route.__resumable__ = spec  # type: ignore[attr-defined]
    return route


def spec_of(fn: Callable[..., Any]) -> RouteSpec | None:
    """The spec of a ``@resumable`` route function (through Litestar's binding to a controller)."""
    return getattr(fn, "__resumable__", None)


@overload
def resumable(fn: Callable[P, AsyncIterator[Any]], /) -> Callable[P, Awaitable[Response[Any]]]: ...


@overload
def resumable(
    *, key: str | KeyFunction | None = None, **options: Unpack[RouteOptions]
) -> Callable[[Callable[P, AsyncIterator[Any]]], Callable[P, Awaitable[Response[Any]]]]: ...


def resumable(
    fn: Callable[..., AsyncIterator[Any]] | None = None,
    /,
    *,
    key: str | KeyFunction | None = None,
    **options: Unpack[RouteOptions],
) -> Any:
    """Make a streaming handler resumable. Use it under the route decorator, bare or with options.

    Args:
        fn: The handler, an async generator function (when used bare: ``@resumable``).
        key: A handler parameter whose value names the conversation (``key="chat_id"``), or a function of
            the handler's arguments (``lambda kw: kw["data"]["id"]``): at most one generation per key
            value runs at a time; ``on_conflict`` says what a second one does.
        **options: Any option of :class:`StreamOptions`, for this route; options not given take the
            plugin's value.
    """
    unknown = set(options) - set(OPTION_NAMES)
    if unknown:
        raise TypeError(f"@resumable got unknown option(s) {', '.join(sorted(unknown))}; see StreamOptions")

    def decorate(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., Awaitable[Response[Any]]]:
        if isinstance(fn, BaseRouteHandler):
            raise TypeError(
                "@resumable must go under the route decorator, next to the function: "
                "@get(...) first, then @resumable, then 'async def ...'"
            )
        if isinstance(fn, (staticmethod, classmethod)):
            raise TypeError(
                "@resumable goes on a plain 'async def' (an instance method on a Controller), not on a "
                "staticmethod or classmethod"
            )
        if not inspect.isasyncgenfunction(fn):
            name = getattr(fn, "__qualname__", repr(fn))
            raise TypeError(
                f"@resumable needs an async generator function ('async def' with 'yield'); {name} is not one"
            )
        spec = RouteSpec(f"{fn.__module__}.{fn.__qualname__}", fn, key, options)
        if isinstance(key, str) and key not in spec.parameters:
            raise TypeError(
                f"@resumable(key={key!r}) on {fn.__qualname__}: the handler has no parameter {key!r}; "
                "key names the handler parameter whose value identifies the conversation"
            )
        return _route_function(fn, spec)

    return decorate if fn is None else decorate(fn)
