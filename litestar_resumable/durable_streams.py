"""The Durable Streams protocol, served from the plugin's store.

`Durable Streams <https://github.com/durable-streams/durable-streams>`_ is an open HTTP protocol for
append-only streams that clients read from an offset, catch up and follow live (long-poll or SSE), with
official clients in TypeScript, Python and other languages. Mount its router next to the plugin::

    from litestar import Litestar
    from litestar_resumable import ResumablePlugin
    from litestar_resumable.durable_streams import durable_streams_router

    plugin = ResumablePlugin()
    app = Litestar([chat, durable_streams_router(plugin)], plugins=[plugin])

Then any Durable Streams client can create streams (``PUT /v1/stream/{name}``), append to them (``POST``,
with idempotent producers and ``Stream-Closed``), read them (``GET``, from an offset, ``live=long-poll`` or
``live=sse``), look at them (``HEAD``) and delete them (``DELETE``), in the same store as the app's
``@resumable`` streams. Those are readable too, by stream id (``GET /v1/stream/{stream id}``), as JSON
streams of their events that close with the generation. See docs/durable-streams.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar_resumable._durable import EXPOSED_HEADERS
from litestar_resumable._durable_http import DurableSettings
from litestar_resumable._durable_routes import durable_streams_router as _router

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from litestar import Router
    from litestar.types import Guard

    from litestar_resumable._plugin import ResumablePlugin

__all__ = ("DEFAULT_PATH", "EXPOSED_HEADERS", "durable_streams_router")

DEFAULT_PATH = "/v1/stream"

_PLUGINS_OWNER: Any = object()


def durable_streams_router(
    plugin: ResumablePlugin,
    *,
    path: str = DEFAULT_PATH,
    owner: Callable[..., Any] | None = _PLUGINS_OWNER,
    guards: Sequence[Guard] | None = None,
    long_poll_timeout: float = 30.0,
    sse_duration: float = 60.0,
    keepalive: float = 15.0,
    max_append_bytes: int = 4 * 1024 * 1024,
    max_read_bytes: int = 1024 * 1024,
    cache_control: str = "private, max-age=60, stale-while-revalidate=300",
) -> Router:
    """A Litestar ``Router`` that serves the Durable Streams protocol at ``{path}/{name}`` from the store.

    Args:
        plugin: The app's :class:`ResumablePlugin`: its store keeps the streams, and its routes' options
            say who may read their streams (their ``owner`` function) and how long their leases are.
        path: Where the streams live; a stream's URL is ``{path}/{name}``.
        owner: A function of the request (sync or async) returning who asks, or None: durable streams'
            names are per owner, and a stream is another owner's is as unknown as a missing one. By
            default the plugin's ``owner`` option; ``None``: one namespace for everybody.
        guards: Litestar guards for every request (authentication, say).
        long_poll_timeout: Seconds a ``live=long-poll`` read waits for data before it answers 204.
        sse_duration: Seconds after which a ``live=sse`` response ends (the client reconnects at its
            offset), as the protocol recommends, so that proxies and CDNs can collapse readers.
        keepalive: Seconds between ``control`` events of an idle SSE response.
        max_append_bytes: The largest body of a ``PUT`` or ``POST``; larger ones are refused with 413.
        max_read_bytes: Bytes of data in one catch-up or long-poll response, or one SSE ``data`` event, at
            most (one append at least); the client reads on from the offset it is given.
        cache_control: The ``Cache-Control`` of a catch-up response with data (data at an offset never
            changes). Responses without data, and ``HEAD``, are ``no-store``.
    """
    settings = DurableSettings(
        long_poll_timeout=long_poll_timeout,
        sse_duration=sse_duration,
        keepalive=keepalive,
        max_append_bytes=max_append_bytes,
        max_read_bytes=max_read_bytes,
        cache_control=cache_control,
    )
    return _router(
        plugin,
        path=path,
        owner=plugin.defaults.owner if owner is _PLUGINS_OWNER else owner,
        guards=guards or (),
        settings=settings,
    )
