"""What ``@resumable`` records about a route, and the one dependency that links a route to the plugin.

A leaf module: the decorator (``_route``) and the plugin (``_plugin``) both use it and it uses neither, so
neither imports the other.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from litestar import Request, Response

    from litestar_resumable._options import RouteOptions

__all__ = ("PLUGIN_PARAMETER", "KeyFunction", "RouteServer", "RouteSpec", "with_parameter")

PLUGIN_PARAMETER = "resumable_plugin"
"""The dependency that only :class:`ResumablePlugin` provides; a decorated route in an app without the
plugin fails at startup in Litestar's own check for missing dependencies, naming it."""

KeyFunction = Callable[[dict[str, Any]], str]


@dataclass(frozen=True)
class RouteSpec:
    """What ``@resumable`` knows about a route: its stable id, its key and its option overrides."""

    route_id: str
    function: Callable[..., Any]
    key: str | KeyFunction | None
    overrides: RouteOptions = field(default_factory=dict)  # type: ignore[assignment] # an empty RouteOptions

    def key_of(self, kwargs: dict[str, Any]) -> str | None:
        """The key of a request, from the handler's resolved arguments; None (no key) if its value is None,
        so an optional key parameter makes a request without it a one-off generation."""
        if self.key is None:
            return None
        value = self.key(kwargs) if callable(self.key) else kwargs[self.key]
        return None if value is None else str(value)

    @property
    def parameters(self) -> frozenset[str]:
        return frozenset(inspect.signature(self.function).parameters)


class RouteServer(Protocol):
    """What a ``@resumable`` route function asks of the plugin: serve this request."""

    async def serve(
        self,
        spec: RouteSpec,
        request: Request[Any, Any, Any],
        handoff: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Response[Any]: ...


def with_parameter(signature: inspect.Signature, *names: str) -> inspect.Signature:
    """``signature`` with keyword-only parameters ``names`` added (before any ``**kwargs``)."""
    parameters = list(signature.parameters.values())
    rest = [p for p in parameters if p.kind is inspect.Parameter.VAR_KEYWORD]
    kept = [p for p in parameters if p.kind is not inspect.Parameter.VAR_KEYWORD and p.name not in names]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in names]
    return signature.replace(parameters=[*kept, *added, *rest], return_annotation=inspect.Parameter.empty)
