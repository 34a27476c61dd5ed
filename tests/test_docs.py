"""The README's and the docs' Python examples run, and their generated parts match what generates them,
so they cannot rot."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from _support import docs, observability
from _support.asgi import serve, within
from litestar import Litestar, get
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from litestar_resumable import MemoryStreamStore, ResumablePlugin, StreamEvent, StreamWriter, resumable
from litestar_resumable.testing import read_sse

ROOT = Path(__file__).parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"(<!-- fragment -->\s*)?```python\n(.*?)```", re.DOTALL)


def examples() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for number, match in enumerate(_BLOCK.finditer(path.read_text(encoding="utf-8")), start=1):
            if match.group(1) is None:  # blocks marked as fragments are not whole programs
                found.append((f"{path.name}#{number}", match.group(2)))
    return found


def run_example(name: str, code: str) -> types.ModuleType:
    """Run a block as a module (not as ``__main__``), in a thread without an event loop, so that a block
    may call ``asyncio.run(...)`` at module level (docs/testing.md runs its test that way)."""
    module = types.ModuleType("doc_example_" + re.sub(r"\W", "_", name))
    sys.modules[module.__name__] = module  # dataclasses and Litestar look types up in sys.modules
    try:
        exec(compile(code, name, "exec"), module.__dict__)  # noqa: S102 - our own documentation
    finally:
        del sys.modules[module.__name__]
    return module


@pytest.mark.parametrize(("name", "code"), examples(), ids=[name for name, _ in examples()])
async def test_example_runs_and_its_app_starts(name: str, code: str) -> None:
    module = await asyncio.to_thread(run_example, name, code)
    app = getattr(module, "app", None)
    if isinstance(app, Litestar):
        async with serve(app) as client:
            assert (await client.get("/resumable/streams/AAAAAAAAAAAAAAAAAAAAAA")).status_code == 404


async def test_the_quick_start_streams_and_resumes_as_the_readme_shows() -> None:
    name, code = examples()[0]
    app = (await asyncio.to_thread(run_example, name, code)).app
    async with serve(app) as client:
        first = await client.get("/count", params={"n": 3})
        stream_id = first.headers["x-resumable-stream-id"]
        lines = first.text.splitlines()
        assert lines[0] == "retry: 1000"
        assert [line for line in lines if line.startswith("data: ")] == [
            "data: 0 ",
            "data: 1 ",
            "data: 2 ",
            'data: {"status":"done"}',
        ]
        resumed = await client.get("/count", headers={"Last-Event-ID": f"{stream_id}.1"})
        assert [line for line in resumed.text.splitlines() if line.startswith("id: ")] == [
            f"id: {stream_id}.{p}" for p in (2, 3, 4)
        ]
        assert (await client.get("/count", headers={"Last-Event-ID": f"{stream_id}.4"})).status_code == 204


def test_the_option_table_is_generated_from_stream_options() -> None:
    assert docs.shown() == docs.option_table(), (
        "docs/configuration.md's option table differs from StreamOptions in litestar_resumable/_options.py; "
        f"regenerate it from the repository root with: {docs.REGENERATE}"
    )


def _benchmarks_module(name: str) -> types.ModuleType:
    """benchmarks/<name>.py, loaded by path: the benchmarks are not an installed package."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("generator", "page"),
    [("readme", "README.md"), ("scaling", "docs/scaling.md"), ("observability", "docs/observability.md")],
)
def test_the_figures_are_generated_from_the_benchmark_results(generator: str, page: str) -> None:
    # README's performance table, docs/scaling.md's figures and docs/observability.md's cost: each page's
    # generated block shows what benchmarks/results/results.json says, never a number copied by hand.
    module = _benchmarks_module(generator)
    results = json.loads((ROOT / "benchmarks" / "results" / "results.json").read_text(encoding="utf-8"))
    assert module.shown(ROOT / page) == module.section(results), (
        f"{page}'s figures differ from benchmarks/results/results.json; regenerate them from the "
        f'repository root with: .venv/bin/python -c "import json, pathlib; from benchmarks import '
        f"{generator}; {generator}.update(pathlib.Path('{page}'), "
        "json.loads(pathlib.Path('benchmarks/results/results.json').read_text()))\""
    )


# -- docs/observability.md and docs/grafana-dashboard.json --


def test_the_metric_table_is_generated_from_the_registered_collectors() -> None:
    assert observability.shown() == observability.metric_table(), (
        "docs/observability.md's metric table differs from the collectors of litestar_resumable/_metrics.py; "
        f"regenerate it from the repository root with: {observability.REGENERATE}"
    )


def test_the_observability_page_names_only_metrics_the_library_exposes() -> None:
    text = observability.PAGE.read_text(encoding="utf-8")
    assert observability.names_in(text) <= observability.series() | {
        m.name for m in observability.registered()
    }
    queries = observability.page_queries()
    assert len(queries) >= 10
    for query in queries:
        assert observability.names_in(query), query
        assert observability.names_in(query) <= observability.series(), query


def test_the_dashboard_has_titled_panels_on_a_data_source_and_queries_only_series_that_exist() -> None:
    dashboard = observability.load_dashboard()
    assert dashboard["schemaVersion"] >= 39
    (source,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert source["query"] == "prometheus"
    panels = observability.panels(dashboard)
    assert panels
    for panel in panels:
        assert panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${" + source["name"] + "}"}
        assert panel["targets"]
        for target in panel["targets"]:
            assert observability.names_in(target["expr"]), target["expr"]
            assert target["datasource"] == panel["datasource"]
    named = {
        name for query in observability.dashboard_queries(dashboard) for name in observability.names_in(query)
    }
    assert named <= observability.series()
    # Every metric is on the dashboard.
    assert {metric.name for metric in observability.registered()} <= {
        re.sub(r"_(bucket|sum|count)$", "", name) for name in named
    }


def test_every_query_of_the_dashboard_and_the_page_parses(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        reason = "promtool (Debian's prometheus) is not installed"
        if os.environ.get("RESUMABLE_REQUIRE_PROMTOOL") == "1":  # .ci/run installs it
            pytest.fail(f"RESUMABLE_REQUIRE_PROMTOOL=1 but {reason}")
        pytest.skip(reason)
    queries = [
        *observability.page_queries(),
        *map(
            observability.grafana_to_promql, observability.dashboard_queries(observability.load_dashboard())
        ),
    ]
    rules = [f"      - record: docs:query_{n}\n        expr: {json.dumps(q)}" for n, q in enumerate(queries)]
    path = tmp_path / "rules.yml"
    path.write_text("groups:\n  - name: docs\n    rules:\n" + "\n".join(rules) + "\n", encoding="utf-8")
    checked = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout + checked.stderr


async def test_the_setup_example_serves_the_series_on_litestars_metrics_route() -> None:
    ((name, code),) = [
        (n, c) for n, c in examples() if n.startswith("observability.md") and "Prometheus" in c
    ]
    app = (await asyncio.to_thread(run_example, name, code)).app
    async with serve(app) as client:
        answer = await within(read_sse(client, "GET", "/answer", params={"prompt": "one two"}))
        assert answer.terminal is not None
        scraped = (await within(client.get("/metrics"))).text
    samples = [s for family in text_string_to_metric_families(scraped) for s in family.samples]
    route = next(s.labels["route"] for s in samples if s.name == "resumable_generations_started_total")
    assert route.endswith(".answer")
    names = {s.name for s in samples if s.labels.get("route") == route}
    assert {"resumable_events_total", "resumable_time_to_first_event_seconds_count"} <= names


def test_multiprocess_mode_sums_gauges_and_counters_over_processes_as_the_page_says(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT / "tests")}

    def run(function: str) -> subprocess.Popen[str]:
        command = f"from _support.observability import {function}; {function}()"
        return subprocess.Popen([sys.executable, "-c", command], env=env, stdout=subprocess.PIPE, text=True)

    pids = []
    for _ in range(2):
        with run("count_one_generation") as process:
            pids.append(str(process.pid))
        assert process.returncode == 0
    with run("scrape_with_litestar") as scraper:
        scraped, _ = scraper.communicate(timeout=60)
    shown = [line for line in scraped.splitlines() if line.startswith("resumable_")]
    assert len(pids) == 2
    assert sorted(shown) == sorted(observability.block_after("<!-- multiprocess: checked"))


@pytest.fixture
def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def test_a_workers_span_is_linked_to_the_job_and_current_in_the_writers_block(store, traced) -> None:
    provider, exporter = traced
    tracer = provider.get_tracer("a job")
    plugin = ResumablePlugin(store)
    stream_id = await plugin.open_stream()
    with tracer.start_as_current_span("job"):
        async with StreamWriter(store, stream_id, tracing=provider) as writer:
            with tracer.start_as_current_span("model call"):
                await writer.write("a")
        with tracer.start_as_current_span("after the block"):
            pass
    await plugin.shutdown()
    spans = {span.name: span for span in exporter.get_finished_spans()}
    generation, job = spans["resumable generation"], spans["job"]
    assert generation.parent is None
    assert [link.context.span_id for link in generation.links] == [job.context.span_id]
    assert spans["model call"].parent.span_id == generation.context.span_id  # type: ignore[union-attr]
    assert spans["after the block"].parent.span_id == job.context.span_id  # type: ignore[union-attr]
    assert generation.attributes is not None
    assert (generation.attributes["resumable.route"], generation.attributes["resumable.events"]) == ("-", 1)


async def test_resumes_and_viewers_open_no_span_of_the_librarys(traced) -> None:
    provider, exporter = traced

    @get("/two")
    @resumable
    async def two() -> AsyncIterator[str]:
        yield "a"
        yield "b"

    app = Litestar([two], plugins=[ResumablePlugin(tracing=provider)])
    async with serve(app) as client:
        first = await within(read_sse(client, "GET", "/two"))
        await within(read_sse(client, "GET", "/two", last_event_id=first.events[0].id))
        await within(read_sse(client, "GET", f"/resumable/streams/{first.stream_id}"))
    assert [s.name for s in exporter.get_finished_spans()] == ["resumable generation"]


async def test_store_errors_count_neither_a_refused_create_nor_a_cancelled_read_as_the_page_says() -> None:
    registry = CollectorRegistry()
    store = _StalledReads()
    started = asyncio.Event()

    @get("/chat/{chat_id:str}")
    @resumable(key="chat_id", on_conflict="reject")
    async def chat(chat_id: str) -> AsyncIterator[str]:
        yield chat_id
        started.set()
        await asyncio.Event().wait()

    app = Litestar([chat], plugins=[ResumablePlugin(store, metrics=registry)], logging_config=None)
    async with serve(app) as client:
        async with client.stream("GET", "/chat/42") as first:
            await within(anext(first.aiter_bytes()))  # "retry: ...": the follower then reads, and waits
            await within(asyncio.gather(started.wait(), store.reading.wait()))
            assert (await within(client.get("/chat/42"))).status_code == 409
        await within(store.cancelled.wait())  # the follower's read, cancelled as its client went
        stream_id = first.headers["x-resumable-stream-id"]
        assert (await within(client.delete(f"/resumable/streams/{stream_id}"))).status_code == 202
    create = {"operation": "create"}
    assert registry.get_sample_value("resumable_store_seconds_count", create) == 2  # both timed
    assert registry.get_sample_value("resumable_store_errors_total", create) is None
    assert registry.get_sample_value("resumable_store_errors_total", {"operation": "read"}) is None
    assert registry.get_sample_value("resumable_store_seconds_count", {"operation": "read"}) is None


class _StalledReads(MemoryStreamStore):
    """A store whose reads never answer: a follower's read is in flight when its client goes."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def read_after(
        self, stream_id: str, position: int, *, limit: int, max_bytes: int | None = None
    ) -> list[StreamEvent]:
        self.reading.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return await super().read_after(stream_id, position, limit=limit, max_bytes=max_bytes)


async def test_the_log_steps_and_lines_are_as_the_page_shows(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStreamStore()

    @get("/three")
    @resumable
    async def three() -> AsyncIterator[str]:
        for word in ("one", "two", "three"):
            yield word + " "

    plugin = ResumablePlugin(store)
    with caplog.at_level(logging.DEBUG, logger="litestar_resumable"):
        async with serve(Litestar([three], plugins=[plugin], logging_config=None)) as client:
            answer = await within(read_sse(client, "GET", "/three"))
            await within(_logged(caplog, answer.stream_id, "generation ended"))
            await within(read_sse(client, "GET", "/three", last_event_id=answer.events[0].id))
            # Writers whose streams someone else ends: a cancel, and an interrupt as a reader that found
            # the lease run out writes it.
            for end in (plugin.cancel, lambda stream_id: store.finish(stream_id, "interrupted")):
                stream_id = await plugin.open_stream()
                async with StreamWriter(store, stream_id) as writer:
                    await writer.write("a")
                    await end(stream_id)
                    await within(writer.wait_cancelled())
                await within(_logged(caplog, stream_id, "generation ended"))

    records = [r for r in caplog.records if hasattr(r, "step")]
    baseline = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
    for step, level, fields in observability.log_steps():
        record = next(r for r in records if r.step == step)  # type: ignore[attr-defined]
        assert record.levelname == level, step
        assert set(vars(record)) - baseline == {"step", "stream_id", *fields}, step
        assert record.getMessage().startswith(f"{step}: stream {record.stream_id}")  # type: ignore[attr-defined]
    route = next(r.route for r in records if r.stream_id == answer.stream_id)  # type: ignore[attr-defined]
    lines = [
        re.sub(r"duration=\S+", "duration=<seconds>", r.getMessage())
        .replace(answer.stream_id, "<stream id>")
        .replace(f"route={route}", "route=<route id>")
        for r in records
        if r.stream_id == answer.stream_id  # type: ignore[attr-defined]
    ]
    assert lines == observability.block_after("<!-- log lines: checked")


async def _logged(caplog: pytest.LogCaptureFixture, stream_id: str, step: str) -> None:
    while not any(
        getattr(r, "stream_id", None) == stream_id and getattr(r, "step", None) == step
        for r in caplog.records
    ):
        await asyncio.sleep(0.01)
