"""What a request hands to the generation it starts: its dependencies with ``yield``, and its session.

Litestar closes a request's dependencies with ``yield`` (a database session, an HTTP client) once the
route function has returned, before the response is sent (``DependencyCleanupGroup``, entered in
``HTTPRoute._call_handler_function``). A generation outlives its request, so the plugin takes that cleanup
over. At startup it wraps every generator dependency of a ``@resumable`` route (``defer``); per request, the
wrappers and the route function share one :class:`Handoff` (the plugin's dependency, resolved once per
request). A wrapper yields the dependency's value as before; when Litestar then asks it to clean up, it
hands the dependency's generator to the generation the request started, or, if it started none (a
resume), cleans it up at once. At the generation's end (:meth:`Handoff.release`) each is closed exactly
once, in reverse order: finished normally if the generation is ``done``, else with the handler's
exception (or :class:`StreamClosedError` naming the ending) thrown in, as Litestar does on an error.

Litestar's SQLAlchemy plugin (Advanced Alchemy) keeps ``db_session`` in the request's scope instead, and
its ``before_send`` hook closes it (and, with ``autocommit``, commits or rolls back) when the response
starts. A generation takes that scope entry with it, so the request's response leaves it alone, and at
its end replays the end of a response to the app's ``before_send`` hooks on the generation's copy of
the scope: status 200 when ``done``, 500 otherwise.

Release runs before the terminal event, so that what the dependencies commit is committed before any
reader hears ``done``; a release that fails makes a ``done`` stream end ``error``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from typing import TYPE_CHECKING, Annotated, Any

from litestar.di import Dependency, Provide

from litestar_resumable._errors import StreamClosedError
from litestar_resumable._producer import Ending
from litestar_resumable._spec import PLUGIN_PARAMETER, with_parameter
from litestar_resumable._waiting import wait_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from litestar import Request

    from litestar_resumable._spec import RouteServer

__all__ = ("Handoff", "defer")

logger = logging.getLogger("litestar_resumable")

_SCOPE_RESOURCES = ("_aa_connection_state",)  # Advanced Alchemy's namespace in the scope
_HANDOVER_TIMEOUT = 5.0  # the request's cleanup runs right after its route function; this is a backstop


class Handoff:
    """One request's dependencies and scope resources, and the generation (if any) that took them."""

    def __init__(self, server: RouteServer) -> None:
        self.server = server
        self._expected = 0
        self._deferred: list[Any] = []
        self._all_in = asyncio.Event()
        self._all_in.set()
        self._taken = False
        self._released = False
        self._scope: dict[str, Any] | None = None
        self._request: Request[Any, Any, Any] | None = None

    def take(self, request: Request[Any, Any, Any]) -> None:
        """A generation starts: it takes this request's dependencies and scope resources."""
        self._taken = True
        self._request = request
        resources = {name: request.scope.pop(name) for name in _SCOPE_RESOURCES if name in request.scope}  # type: ignore[misc]
        if resources:
            self._scope = {**request.scope, **resources}

    async def release(self, ending: Ending) -> Ending:
        """Close what the generation took, once; the ending, made ``error`` if that fails while ``done``."""
        await wait_event(self._all_in, _HANDOVER_TIMEOUT)
        self._released = True
        failed = False
        for generator in reversed(self._deferred):
            failed |= not await _close(generator, ending)
        self._deferred.clear()
        if self._scope is not None and self._request is not None:
            message: dict[str, Any] = {
                "type": "http.response.start",
                "status": 200 if ending.status == "done" else 500,
                "headers": [],
            }
            for hook in self._request.app.before_send:
                try:
                    await hook(message, self._scope)  # type: ignore[arg-type]
                except Exception:
                    logger.exception("a before_send hook failed at the end of a generation")
                    failed = True
        return Ending("error") if failed and ending.status == "done" else ending

    # -- the dependency wrappers' side (see defer) --

    def expect(self) -> None:
        self._expected += 1
        self._all_in.clear()

    async def hand_over(self, generator: Any) -> None:
        if not self._taken or self._released:
            await _close(generator, Ending("done"))
        else:
            self._deferred.append(generator)
        self.withdraw()

    def withdraw(self) -> None:
        self._expected -= 1
        if self._expected == 0:
            self._all_in.set()


async def _close(generator: Any, ending: Ending) -> bool:
    """Finish a dependency's generator as Litestar would; False if it failed."""
    error = (
        None
        if ending.status == "done"
        else ending.exception or StreamClosedError(f"the generation ended {ending.status or 'elsewhere'}")
    )
    try:
        if inspect.isasyncgen(generator):
            if error is None:
                await generator.__anext__()
            else:
                await generator.athrow(error)
        elif error is None:
            next(generator)
        else:
            generator.throw(error)
    except (StopAsyncIteration, StopIteration):
        return True
    except Exception as exc:
        if exc is error:
            return True
        logger.exception("a dependency failed to close at the end of a generation")
        return False
    logger.error("a dependency with yield yielded more than once")
    return False


def defer(provide: Provide) -> Provide:
    """``provide`` (a generator dependency) as one whose cleanup a generation can take over."""
    original = provide.dependency
    signature = inspect.signature(original)
    is_async = provide.has_async_generator_dependency

    async def wrapper(**kwargs: Any) -> AsyncIterator[Any]:
        handoff: Handoff = kwargs.pop(PLUGIN_PARAMETER)
        generator = original(**kwargs)
        value = await generator.__anext__() if is_async else next(generator)
        handoff.expect()
        try:
            yield value
        except BaseException as exc:
            # The request failed (Litestar throws its exception into every dependency): as Litestar would.
            handoff.withdraw()
            try:
                if is_async:
                    await generator.athrow(exc)
                else:
                    generator.throw(exc)
            except (StopAsyncIteration, StopIteration):
                return
            raise
        await handoff.hand_over(generator)

    functools.update_wrapper(wrapper, original)
    wrapper.__resumable_deferred__ = True  # type: ignore[attr-defined]
    wrapper.__signature__ = with_parameter(signature, PLUGIN_PARAMETER)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        **getattr(original, "__annotations__", {}),
        PLUGIN_PARAMETER: Annotated[Any, Dependency()],  # Litestar's NamedDependency[Any]
    }
    wrapper.__annotations__.pop("return", None)
    return Provide(wrapper)
