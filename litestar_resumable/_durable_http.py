"""The Durable Streams routes' HTTP side: their settings, the request headers they parse, their responses.

Every response, errors included, carries ``X-Content-Type-Options: nosniff`` and
``Cross-Origin-Resource-Policy: cross-origin`` (PROTOCOL.md, "Browser Security Headers"): build them with
:func:`respond` and :func:`error_response`, or :func:`http_error` for Litestar's own errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar import Request, Response
from litestar.response.base import ASGIResponse

from litestar_resumable._durable import (
    ProtocolError,
    offset_of,
    parse_expires_at,
    parse_producer_number,
    parse_ttl,
)
from litestar_resumable._store.durable_types import Producer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from litestar.exceptions import HTTPException

    from litestar_resumable._store.durable_types import DurableAppend

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "cross-origin"}


@dataclass(frozen=True)
class DurableSettings:
    """How the Durable Streams routes behave (the keyword arguments of ``durable_streams_router``)."""

    long_poll_timeout: float = 30.0
    sse_duration: float = 60.0
    keepalive: float = 15.0
    max_append_bytes: int = 4 * 1024 * 1024
    max_read_bytes: int = 1024 * 1024
    cache_control: str = "private, max-age=60, stale-while-revalidate=300"

    def __post_init__(self) -> None:
        for name in ("long_poll_timeout", "sse_duration", "keepalive", "max_append_bytes", "max_read_bytes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")


_REFUSALS = {
    "closed": (409, "the stream is closed"),
    "content_type": (409, "the stream has another content type"),
    "stream_seq": (409, "Stream-Seq must be greater than the last one, byte by byte"),
    "epoch_restart": (400, "a new producer epoch starts at Producer-Seq 0"),
    "deleted": (410, "the stream was deleted (it is kept for the streams forked from it)"),
    "missing": (404, "the stream is gone"),
}


def appended_response(result: DurableAppend, producer: Producer | None, *, has_data: bool) -> ASGIResponse:
    reply = {"Stream-Next-Offset": offset_of(result.tail)}
    if result.closed:
        reply["Stream-Closed"] = "true"
    outcome = result.outcome
    if outcome in _REFUSALS:
        status, message = _REFUSALS[outcome]
        return error_response(status, message, reply)
    if outcome == "stale_epoch":
        return error_response(
            403, "a newer epoch of this producer has written", {"Producer-Epoch": str(result.producer_epoch)}
        )
    if outcome == "seq_gap":
        expected = {"Producer-Expected-Seq": str(result.producer_seq)}
        received = {"Producer-Received-Seq": str(producer.seq if producer is not None else "")}
        return error_response(409, "Producer-Seq skips ahead", {**expected, **received})
    if producer is not None:
        reply["Producer-Epoch"] = str(
            producer.epoch if result.producer_epoch is None else result.producer_epoch
        )
        if result.producer_seq is not None:
            reply["Producer-Seq"] = str(result.producer_seq)
    # A producer's new data is 200; anything else that succeeds (a retry, a close, a plain append) 204.
    return respond(200 if outcome == "appended" and producer is not None and has_data else 204, reply)


def producer_of(headers: Mapping[str, str]) -> Producer | None:
    producer_id, epoch, seq = (
        headers.get(name) for name in ("producer-id", "producer-epoch", "producer-seq")
    )
    if producer_id is None and epoch is None and seq is None:
        return None
    if producer_id is None or epoch is None or seq is None:
        raise ProtocolError(400, "give Producer-Id, Producer-Epoch and Producer-Seq together")
    if not producer_id:
        raise ProtocolError(400, "Producer-Id must not be empty")
    return Producer(
        producer_id,
        parse_producer_number("Producer-Epoch", epoch),
        parse_producer_number("Producer-Seq", seq),
    )


def expiry_of(headers: Mapping[str, str]) -> tuple[int | None, float | None]:
    """A ``PUT``'s ``Stream-TTL`` or ``Stream-Expires-At`` (one at most)."""
    ttl_text, expires_text = headers.get("stream-ttl"), headers.get("stream-expires-at")
    if ttl_text is not None and expires_text is not None:
        raise ProtocolError(400, "give Stream-TTL or Stream-Expires-At, not both")
    ttl = None if ttl_text is None else parse_ttl(ttl_text)
    return ttl, None if expires_text is None else parse_expires_at(expires_text)


def stream_closed(value: str | None) -> bool:
    """``Stream-Closed``: only ``true`` (any case) counts; other values are as if absent."""
    return value is not None and value.strip().lower() == "true"


def same_time(a: float | None, b: float | None) -> bool:
    return a == b if a is None or b is None else abs(a - b) < 0.001  # noqa: PLR2004 - a millisecond


def respond(status: int, headers: Mapping[str, str], body: bytes = b"") -> ASGIResponse:
    return ASGIResponse(body=body, status_code=status, headers={**SECURITY_HEADERS, **headers})


def error_response(status: int, message: str, headers: Mapping[str, str]) -> ASGIResponse:
    reply = {"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", **headers}
    return respond(status, reply, message.encode())


def http_error(_request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own errors on these routes (a body too large, a guard's 401) with the protocol's headers."""
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store", **(exc.headers or {})}
    return Response(
        exc.detail.encode(), status_code=exc.status_code, headers=headers, media_type="text/plain"
    )
