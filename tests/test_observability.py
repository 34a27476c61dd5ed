"""Observability: the Prometheus series scraped from a real ``/metrics``, OpenTelemetry spans, the
``on_generation_end`` hook, and the lifecycle log lines.

The scrape tests run ``_support/app.py`` under uvicorn with ``E2E_METRICS=1``: the plugin's metrics on
prometheus-client's default registry, served by Litestar's own ``PrometheusController``, as an app does it.
They read the scrape with prometheus-client's own parser.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from _support.asgi import serve, within
from _support.figures import record
from _support.reading import open_sse
from _support.stores import REDIS_URL
from litestar import Controller, Litestar, Request, get
from litestar.di import NamedDependency, Provide
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from litestar_resumable import (
    GenerationEnd,
    MemoryStreamStore,
    RedisStreamStore,
    ResumablePlugin,
    StreamOptions,
    StreamStore,
    StreamWriter,
    resumable,
)
from litestar_resumable.testing import read_sse

TIMEOUT = httpx.Timeout(10.0, connect=5.0)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def scrape(client: httpx.AsyncClient, url: str) -> Samples:
    response = await within(client.get(f"{url}/metrics"))
    assert response.status_code == 200
    return parse(response.text)


async def scrape_until(
    client: httpx.AsyncClient, url: str, ready: Callable[[Samples], bool], seconds: float = 10.0
) -> Samples:
    """Scrape until ``ready`` holds: what the server counts after a response has ended (a producer's end,
    a follower's close) is counted a moment later, so the test waits for it, boundedly."""
    deadline = time.monotonic() + seconds
    while True:
        samples = await scrape(client, url)
        if ready(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.05)


# -- the scrape --


@pytest.mark.e2e
async def test_a_scrape_shows_every_series_for_streams_that_end_each_way(shared, redis_prefix):
    (server,) = shared({"E2E_METRICS": "1", "E2E_LEASE": "1"})
    url = server.url
    store = RedisStreamStore.from_url(REDIS_URL, key_prefix=redis_prefix)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            # done: five one-byte events.
            async with open_sse(client, f"{url}/count?n=5") as done:
                counted = await within(done.rest())
            count_route = (await store.info(done.stream_id)).route  # type: ignore[union-attr]

            # error
            async with open_sse(client, f"{url}/boom?n=2") as failed:
                await within(failed.rest())
            boom_route = (await store.info(failed.stream_id)).route  # type: ignore[union-attr]

            # cancelled, with a look at the gauges while it runs and is followed
            async with open_sse(client, f"{url}/hold?n=1") as held:
                await within(held.take(1))
                hold_route = (await store.info(held.stream_id)).route  # type: ignore[union-attr]
                live = await scrape(client, url)
                assert value(live, "resumable_generations_running", route=hold_route) == 1
                assert value(live, "resumable_followers", route=hold_route) == 1
                cancel = await within(client.delete(f"{url}/resumable/streams/{held.stream_id}"))
                assert cancel.status_code == 202
                cancelled = await within(held.rest())
            assert cancelled[-1].data == '{"status":"cancelled"}'

            # interrupted: the handler blocks its event loop past its lease; a reader elsewhere (this test,
            # on the same Redis) gives the stream up; the producer hears it once its loop runs again.
            async with open_sse(client, f"{url}/stall?seconds=3") as stalled:
                await within(stalled.take(1))
                assert (await within(client.post(f"{url}/stall/go"))).status_code == 202
                given_up = await within(_give_up(store, stalled.stream_id))
                stall_route = given_up.route
                interrupted = await within(stalled.rest())
            assert interrupted[-1].data == '{"status":"interrupted"}'

            # resumes of each kind, on the done stream
            async with open_sse(client, f"{url}/count?n=5", last_event_id=counted[1].id) as resumed:
                await within(resumed.rest())
            async with open_sse(client, f"{url}/resumable/streams/{done.stream_id}") as replayed:
                await within(replayed.rest())
            after_end = await within(
                client.get(
                    f"{url}/resumable/streams/{done.stream_id}", headers={"Last-Event-ID": counted[-1].id}
                )
            )
            assert after_end.status_code == 204

            routes = (count_route, boom_route, hold_route, stall_route)
            samples = await scrape_until(
                client,
                url,
                lambda s: (
                    value(s, "resumable_generations_ended_total", route=stall_route, status="interrupted")
                    == 1
                    and all(value(s, "resumable_followers", route=r) == 0 for r in routes)
                ),
            )
    finally:
        await store.close()

    for route, status in ((count_route, "done"), (boom_route, "error"), (hold_route, "cancelled")):
        assert value(samples, "resumable_generations_started_total", route=route) == 1
        assert value(samples, "resumable_generations_ended_total", route=route, status=status) == 1
    assert value(samples, "resumable_generations_ended_total", route=stall_route, status="interrupted") == 1
    for route in routes:
        assert value(samples, "resumable_generations_running", route=route) == 0
        assert value(samples, "resumable_followers", route=route) == 0
    assert value(samples, "resumable_events_total", route=count_route) == 5
    assert value(samples, "resumable_event_bytes_total", route=count_route) == 5
    assert value(samples, "resumable_events_total", route=boom_route) == 2
    for kind in ("last_event_id", "replay", "after_end"):
        assert value(samples, "resumable_resumes_total", route=count_route, kind=kind) == 1
    for operation in ("create", "append", "read", "finish"):
        assert (value(samples, "resumable_store_seconds_count", operation=operation) or 0) >= 1
    # The first request, the resume and the replay of /count each sent a first event.
    assert value(samples, "resumable_time_to_first_event_seconds_count", route=count_route) == 3
    record(
        "metrics scrape",
        series=sorted({name for name, _ in samples if name.startswith("resumable_")}),
        store_seconds_append_count=value(samples, "resumable_store_seconds_count", operation="append"),
        time_to_first_event_sum_count=value(
            samples, "resumable_time_to_first_event_seconds_sum", route=count_route
        ),
    )


async def _give_up(store: StreamStore, stream_id: str) -> Any:
    """End a stream as interrupted once its writer's lease has run out, as a reader does."""
    while True:
        info = await store.finish(stream_id, "interrupted", only_if_lease_expired=True)
        assert info is not None
        if info.status == "interrupted":
            return info
        assert info.status == "running"
        await asyncio.sleep(0.1)  # waits out the lease: a deadline, not a synchronisation


@pytest.mark.e2e
async def test_a_store_that_fails_shows_in_the_store_error_series(own_redis, own):
    (server,) = own({"E2E_METRICS": "1", "E2E_STORE_RETRY_FOR": "0.5", "E2E_LEASE": "3"})
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        async with open_sse(client, f"{server.url}/hold?n=1") as held:
            await within(held.take(1))
            own_redis.kill()  # the producer's next lease renewal fails, is retried, and gives up
            ended = await within(held.rest(), 15)
        assert ended[-1].data.startswith('{"status":"interrupted"')  # the follower's own end: no store
        samples = await scrape_until(
            client,
            server.url,
            lambda s: (
                (value(s, "resumable_store_errors_total", operation="append") or 0) >= 1
                and value(s, "resumable_generations_running", route="_support.app.hold") == 0
            ),
            seconds=15,
        )
    assert (value(samples, "resumable_store_errors_total", operation="append") or 0) >= 1


# -- spans --


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _traced_app(provider: TracerProvider, plugin: ResumablePlugin, handlers: list[Any]) -> Litestar:
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin  # noqa: PLC0415

    return Litestar(
        handlers, plugins=[OpenTelemetryPlugin(OpenTelemetryConfig(tracer_provider=provider)), plugin]
    )


async def test_a_generation_has_a_span_linked_to_its_request_with_the_model_spans_inside(spans):
    provider, exporter = spans
    tracer = provider.get_tracer("the app")

    class Answers(Controller):
        path = "/answers"

        @get("/{n:int}")
        @resumable
        async def answer(self, n: int) -> AsyncIterator[str]:
            for i in range(n):
                with tracer.start_as_current_span("model call"):
                    yield f"token {i}"

    plugin = ResumablePlugin(tracing=provider)
    async with serve(_traced_app(provider, plugin, [Answers])) as client:
        response = await within(read_sse(client, "GET", "/answers/3"))
    assert [e.data for e in response.events[:-1]] == ["token 0", "token 1", "token 2"]
    stream_id = response.stream_id

    finished = exporter.get_finished_spans()
    (generation,) = [s for s in finished if s.name == "resumable generation"]
    assert generation.attributes["resumable.stream_id"] == stream_id
    assert generation.attributes["resumable.status"] == "done"
    assert generation.attributes["resumable.events"] == 3
    assert generation.attributes["resumable.bytes"] == len("token 0") * 3
    assert "answers" in generation.attributes["resumable.route"].lower()
    # A trace of its own, linked to the request's server span.
    request_spans = [s for s in finished if s.kind == trace.SpanKind.SERVER]
    assert request_spans
    assert generation.parent is None
    (link,) = generation.links
    assert link.context.span_id in {s.context.span_id for s in request_spans}
    # The model's spans are its children.
    model_calls = [s for s in finished if s.name == "model call"]
    assert len(model_calls) == 3
    assert all(s.parent is not None and s.parent.span_id == generation.context.span_id for s in model_calls)


async def test_failed_and_cancelled_generations_say_so_on_their_spans(spans):
    provider, exporter = spans
    started = asyncio.Event()

    @get("/fail")
    @resumable
    async def fail() -> AsyncIterator[str]:
        yield "a"
        raise RuntimeError("the model fell over")

    @get("/wait")
    @resumable
    async def wait() -> AsyncIterator[str]:
        yield "a"
        started.set()
        await asyncio.Event().wait()

    plugin = ResumablePlugin(tracing=provider)
    async with serve(_traced_app(provider, plugin, [fail, wait])) as client:
        failed = (await within(read_sse(client, "GET", "/fail"))).events
        async with client.stream("GET", "/wait") as response:
            stream_id = response.headers["x-resumable-stream-id"]
            await within(started.wait())
            assert (await within(client.delete(f"/resumable/streams/{stream_id}"))).status_code == 202
        await within(_finished(exporter, 2))
    assert failed[-1].data == '{"status":"error"}'

    cancelled_span, error_span = sorted(
        (s for s in exporter.get_finished_spans() if s.name == "resumable generation"),
        key=lambda s: s.attributes["resumable.status"],
    )
    assert error_span.attributes["resumable.status"] == "error"
    assert error_span.status.status_code == trace.StatusCode.ERROR
    (exception,) = [e for e in error_span.events if e.name == "exception"]
    assert exception.attributes["exception.message"] == "the model fell over"
    assert cancelled_span.attributes["resumable.status"] == "cancelled"
    assert cancelled_span.attributes["resumable.stream_id"] == stream_id
    assert [e.name for e in cancelled_span.events] == ["cancelled"]


async def _finished(exporter: InMemorySpanExporter, generations: int) -> None:
    while len([s for s in exporter.get_finished_spans() if s.name == "resumable generation"]) < generations:
        await asyncio.sleep(0.01)


# -- the hook --


class Ends:
    """What the hooks heard, and an event per end to wait on."""

    def __init__(self) -> None:
        self.ends: list[tuple[str, GenerationEnd]] = []
        self.heard = asyncio.Event()

    def sync_hook(self, name: str) -> Callable[[GenerationEnd], None]:
        def hook(end: GenerationEnd) -> None:
            self.ends.append((name, end))
            self.heard.set()

        return hook

    def async_hook(self, name: str) -> Callable[[GenerationEnd], Any]:
        async def hook(end: GenerationEnd) -> None:
            await asyncio.sleep(0)
            self.ends.append((name, end))
            self.heard.set()

        return hook

    async def wait_for(self, count: int) -> None:
        while len(self.ends) < count:
            self.heard.clear()
            await self.heard.wait()


async def owner_of(request: Request[Any, Any, Any]) -> str | None:
    return request.headers.get("x-user")


async def test_on_generation_end_reports_each_generation_once_with_its_figures():
    ends = Ends()

    class Chats(Controller):
        path = "/chats"
        dependencies = {"greeting": Provide(lambda: "hi", sync_to_thread=False)}  # noqa: RUF012

        @get("/{chat_id:str}")
        @resumable(key="chat_id", on_generation_end=ends.async_hook("route"))
        async def chat(self, chat_id: str, greeting: NamedDependency[str]) -> AsyncIterator[str]:  # noqa: ARG002 - the key
            yield greeting
            yield "é" * 10  # 20 bytes

        @get("/{chat_id:str}/plain")
        @resumable(key="chat_id")
        async def plain(self, chat_id: str) -> AsyncIterator[str]:
            yield chat_id

    plugin = ResumablePlugin(owner=owner_of, on_generation_end=ends.sync_hook("plugin"))
    async with serve(Litestar([Chats], plugins=[plugin])) as client:
        first = await within(read_sse(client, "GET", "/chats/c1", headers={"x-user": "ada"}))
        await within(ends.wait_for(1))
        await within(read_sse(client, "GET", "/chats/c2/plain", headers={"x-user": "bob"}))
        await within(ends.wait_for(2))
    assert [name for name, _ in ends.ends] == ["route", "plugin"]  # the route's hook replaces the plugin's
    end = ends.ends[0][1]
    assert end.stream_id == first.stream_id
    assert (end.status, end.events, end.bytes, end.owner) == ("done", 2, 2 + 20, "ada")
    assert end.key is not None
    assert end.key.endswith("c1")
    assert end.info is not None
    assert end.info.status == "done"
    assert end.info.last_position == 3
    assert end.duration >= 0
    assert ends.ends[1][1].owner == "bob"


async def test_a_hook_that_raises_is_logged_and_the_stream_ends_as_it_would(caplog):
    def broken(end: GenerationEnd) -> None:
        raise ValueError("the accounting database is down")

    @get("/n")
    @resumable(on_generation_end=broken)
    async def n() -> AsyncIterator[str]:
        yield "1"

    plugin = ResumablePlugin()
    with caplog.at_level(logging.ERROR, logger="litestar_resumable"):
        async with serve(Litestar([n], plugins=[plugin], logging_config=None)) as client:
            events = (await within(read_sse(client, "GET", "/n"))).events
            await within(_logged(caplog, "on_generation_end failed"))
            again = (await within(read_sse(client, "GET", "/n"))).events
    assert events[-1].data == again[-1].data == '{"status":"done"}'


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    while not any(text in r.getMessage() for r in caplog.records):
        await asyncio.sleep(0.01)


async def test_a_worker_writer_reports_its_end_and_counts_in_its_own_metrics(store: StreamStore):
    ends = Ends()
    registry = CollectorRegistry()
    plugin = ResumablePlugin(store)
    stream_id = await plugin.open_stream(owner="ada", key="chat")
    options = StreamOptions(on_generation_end=ends.sync_hook("worker"))
    async with StreamWriter(store, stream_id, options=options, metrics=registry) as writer:
        await writer.write("hello")
        assert registry.get_sample_value("resumable_generations_running", {"route": "-"}) == 1
    ((_, end),) = ends.ends
    assert (end.route, end.status, end.events, end.bytes, end.owner) == ("-", "done", 1, 5, "ada")
    assert registry.get_sample_value("resumable_generations_started_total", {"route": "-"}) == 1
    assert (
        registry.get_sample_value("resumable_generations_ended_total", {"route": "-", "status": "done"}) == 1
    )
    assert registry.get_sample_value("resumable_generations_running", {"route": "-"}) == 0
    assert registry.get_sample_value("resumable_events_total", {"route": "-"}) == 1
    assert registry.get_sample_value("resumable_store_seconds_count", {"operation": "append"}) >= 1
    await plugin.shutdown()


# -- logs --
# (The apps here have logging_config=None: Litestar's default logging set-up replaces the root logger's
# handlers, pytest's capture among them.)


async def test_one_log_line_per_lifecycle_step_and_none_per_event(caplog):
    store = MemoryStreamStore()
    release = asyncio.Event()

    @get("/n/{count:int}")
    @resumable
    async def numbered(count: int) -> AsyncIterator[str]:
        for i in range(count):
            yield str(i)

    @get("/wait")
    @resumable
    async def wait() -> AsyncIterator[str]:
        yield "a"
        release.set()
        await asyncio.Event().wait()

    plugin = ResumablePlugin(store)
    with caplog.at_level(logging.DEBUG, logger="litestar_resumable"):
        async with serve(Litestar([numbered, wait], plugins=[plugin], logging_config=None)) as client:
            few = await within(read_sse(client, "GET", "/n/3"))
            few_lines = await within(_lines_until_end(caplog, few.stream_id))
            many = await within(read_sse(client, "GET", "/n/500"))
            many_lines = await within(_lines_until_end(caplog, many.stream_id))
            resumed = (
                await within(read_sse(client, "GET", "/n/500", last_event_id=many.events[10].id))
            ).events
            async with client.stream("GET", "/wait") as response:
                waiting = response.headers["x-resumable-stream-id"]
                await within(release.wait())
                await within(client.delete(f"/resumable/streams/{waiting}"))
            await within(_lines_until_end(caplog, waiting))
    assert len(resumed) == 500 - 11 + 1
    steps = [(r.step, r.stream_id) for r in caplog.records if hasattr(r, "step")]  # type: ignore[attr-defined]
    many_id, waiting_id = many.stream_id, waiting
    assert [s for s, sid in steps if sid == many_id] == [
        "generation started",
        "generation ended",
        "stream resumed",
    ]
    assert [s for s, sid in steps if sid == waiting_id] == [
        "generation started",
        "generation cancelled",
        "cancelled",
        "generation ended",
    ]
    assert few_lines == many_lines  # 3 events or 500: the same lines
    (ended,) = [
        r
        for r in caplog.records
        if getattr(r, "step", None) == "generation ended" and r.stream_id == many_id  # type: ignore[attr-defined]
    ]
    assert (ended.status, ended.events) == ("done", 500)  # type: ignore[attr-defined]
    assert many_id in ended.getMessage()


async def _lines_until_end(caplog: pytest.LogCaptureFixture, stream_id: str | None) -> int:
    while True:
        mine = [r for r in caplog.records if getattr(r, "stream_id", None) == stream_id]
        if any(getattr(r, "step", None) == "generation ended" for r in mine):
            return len(mine)
        await asyncio.sleep(0.01)
