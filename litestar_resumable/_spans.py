"""The OpenTelemetry span of a generation (the ``otel`` extra): its tracer, its start, its end.

A generation's span runs from its start to its terminal event, in a new trace of its own (the generation
outlives the request) linked to the span that was current when it started: the request's, under
Litestar's OpenTelemetry plugin; a job's, in a worker. Made current in the producer's task, it is the
parent of the model's own spans.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar_resumable._generation_end import GenerationEnd

__all__ = ("activate", "end_span", "start_span", "tracer_for")


def tracer_for(tracing: Any) -> Any:
    """The library's tracer: True, from OpenTelemetry's global tracer provider; or from the one passed."""
    from opentelemetry import trace  # noqa: PLC0415 - the optional extra

    provider = trace.get_tracer_provider() if tracing is True else tracing
    return provider.get_tracer(__name__.partition(".")[0])  # the package's name, not imported from it


def start_span(tracer: Any, stream_id: str, route: str) -> Any:
    """A generation's span, started in a trace of its own and linked to the current span."""
    from opentelemetry import context, trace  # noqa: PLC0415 - the optional extra

    current = trace.get_current_span().get_span_context()
    links = [trace.Link(current)] if current.is_valid else []
    return tracer.start_span(
        "resumable generation",
        context=context.Context(),  # a trace of its own: the generation outlives the request
        kind=trace.SpanKind.INTERNAL,
        links=links,
        attributes={"resumable.stream_id": stream_id, "resumable.route": route},
    )


def activate(span: Any) -> Callable[[], None]:
    """Make ``span`` current in this task; returns the undo."""
    from opentelemetry import context, trace  # noqa: PLC0415 - the optional extra

    token = context.attach(trace.set_span_in_context(span))
    return lambda: context.detach(token)


def end_span(span: Any, end: GenerationEnd) -> None:
    """End a generation's span with how it ended; an error status for ``error`` and ``interrupted``."""
    from opentelemetry.trace import Status, StatusCode  # noqa: PLC0415 - the optional extra

    span.set_attributes(
        {
            "resumable.status": end.status,
            "resumable.events": end.events,
            "resumable.bytes": end.bytes,
            **({"resumable.owner": end.owner} if end.owner is not None else {}),
        }
    )
    if end.status in ("error", "interrupted"):
        span.set_status(Status(StatusCode.ERROR, end.message or end.status))
    span.end()
