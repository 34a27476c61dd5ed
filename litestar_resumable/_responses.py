"""From requests to answers: resume positions, owners, keys, the plain mode and the store-down answer.

Small pure helpers of the plugin, kept apart so that ``_plugin`` reads as wiring.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

from litestar import Request, Response
from litestar.exceptions import ClientException

from litestar_resumable._events import StreamEvent, encode_item, encode_sse
from litestar_resumable._follow import event_stream
from litestar_resumable._ids import MalformedIdError, parse_event_id
from litestar_resumable._producer import Ending

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from litestar.response import Stream

    from litestar_resumable._errors import StoreUnavailableError
    from litestar_resumable._handoff import Handoff
    from litestar_resumable._options import StreamOptions

__all__ = (
    "checked_event_id",
    "owner_id",
    "owner_of",
    "plain_response",
    "resume_position",
    "scoped_key",
    "store_unavailable",
)

logger = logging.getLogger("litestar_resumable")


def resume_position(request: Request[Any, Any, Any]) -> str | None:
    """The event id a request resumes after: the ``Last-Event-ID`` header, else ``last_event_id``."""
    value = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    return value or None


def checked_event_id(value: str) -> tuple[str, int]:
    """An event id's stream id and position, or 400 saying what is wrong with it."""
    try:
        return parse_event_id(value)
    except MalformedIdError as exc:
        raise ClientException(str(exc)) from exc


def scoped_key(key: str, owner: str | None) -> str:
    """Keys are per owner: two users' chat 42 are two chats. The owner is length-prefixed, so no key
    (whatever characters it holds) can pose as another owner's."""
    return f"-:{key}" if owner is None else f"{len(owner)}:{owner}:{key}"


async def owner_of(options: StreamOptions, request: Request[Any, Any, Any]) -> str | None:
    if options.owner is None:
        return None
    owner = options.owner(request)
    if inspect.isawaitable(owner):
        owner = await owner
    return owner_id(owner)


def owner_id(owner: object) -> str | None:
    """Owner ids are strings, whatever the app hands us (an int user id, say)."""
    return None if owner is None else str(owner)


def store_unavailable(request: Request[Any, Any, Any], exc: StoreUnavailableError) -> Response[Any]:
    logger.warning("%s %s: %s", request.method, request.url.path, exc)
    detail = "the stream store is unavailable; try again shortly"
    return Response({"status_code": 503, "detail": detail}, status_code=503, headers={"Retry-After": "1"})


def plain_response(generator: AsyncGenerator[Any, None], handoff: Handoff) -> Stream:
    """The route as a plain SSE stream: the handler runs in the request, events have no ids. What the
    request's dependencies hold stays open until the stream ends, as for a generation."""

    async def body() -> AsyncIterator[bytes]:
        ending = Ending("cancelled")  # the client went away, unless the generator ends first
        try:
            async for item in generator:
                event, data = encode_item(item)
                yield encode_sse(None, [StreamEvent(0, data, event)])
            ending = Ending("done")
        except Exception as exc:
            ending = Ending("error", None, exc)
            raise
        finally:
            await handoff.release(ending)

    return event_stream(body())
