"""The plugin's own routes: resume a stream (``GET``) and cancel its generation (``DELETE``).

Both live at ``{route_prefix}/streams/{stream_id}``, under the plugin's guards, and ask the stream's route's
owner function who is asking, so that another owner's stream is as unknown as a missing one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from litestar import Request, Response, Router, delete, get
from litestar.exceptions import NotFoundException
from litestar.status_codes import HTTP_202_ACCEPTED

from litestar_resumable._responses import owner_id, resume_position

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from litestar.types import Guard

    from litestar_resumable._events import StreamInfo
    from litestar_resumable._serving import StreamServer

__all__ = ("resume_router",)


def resume_router(
    server: StreamServer,
    cancel: Callable[[str, str | None], Awaitable[StreamInfo | None]],
    *,
    prefix: str,
    guards: Sequence[Guard],
) -> Router:
    """The resume and cancel routes under ``prefix``; ``cancel(stream_id, owner)`` ends a generation."""

    @get("/streams/{stream_id:str}", name="litestar_resumable:resume")
    async def resume_stream(stream_id: str, request: Request[Any, Any, Any]) -> Response[Any]:
        """Replay a stream from the start or from ``Last-Event-ID``, then follow it live."""
        requested_at = time.perf_counter()
        owner = await server.requester(stream_id, request)
        position = resume_position(request)
        after = server.position_in(stream_id, position)
        return await server.open(
            stream_id, after, owner=owner_id(owner), route_id=None, resume=True, requested_at=requested_at
        )

    @delete("/streams/{stream_id:str}", name="litestar_resumable:cancel", status_code=HTTP_202_ACCEPTED)
    async def cancel_stream(stream_id: str, request: Request[Any, Any, Any]) -> dict[str, str]:
        """Cancel a generation, wherever it runs; its followers get the ``cancelled`` terminal event."""
        owner = await server.requester(stream_id, request)
        info = await cancel(stream_id, owner)
        if info is None:
            raise NotFoundException(f"unknown or expired stream {stream_id}")
        return {"stream_id": stream_id, "status": info.status}

    return Router(prefix, route_handlers=[resume_stream, cancel_stream], guards=guards)
