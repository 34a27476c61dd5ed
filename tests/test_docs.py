"""The README's and the docs' Python examples run, and their generated parts match what generates them,
so they cannot rot."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import sys
import types
from pathlib import Path

import pytest
from _support import docs
from _support.asgi import serve
from litestar import Litestar

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


def _benchmarks_readme() -> types.ModuleType:
    """benchmarks/readme.py, loaded by path: the benchmarks are not an installed package."""
    spec = importlib.util.spec_from_file_location("benchmarks_readme", ROOT / "benchmarks" / "readme.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_performance_table_is_generated_from_the_benchmark_results() -> None:
    readme = _benchmarks_readme()
    results = json.loads((ROOT / "benchmarks" / "results" / "results.json").read_text(encoding="utf-8"))
    assert readme.shown(ROOT / "README.md") == readme.section(results), (
        "README.md's performance table differs from benchmarks/results/results.json; regenerate it from "
        'the repository root with: .venv/bin/python -c "import json, pathlib; from benchmarks import '
        "readme; readme.update(pathlib.Path('README.md'), "
        "json.loads(pathlib.Path('benchmarks/results/results.json').read_text()))\""
    )


def _benchmarks_scaling() -> types.ModuleType:
    """benchmarks/scaling.py, loaded by path as benchmarks/readme.py is."""
    spec = importlib.util.spec_from_file_location("benchmarks_scaling", ROOT / "benchmarks" / "scaling.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scaling_figures_are_generated_from_the_benchmark_results() -> None:
    scaling = _benchmarks_scaling()
    results = json.loads((ROOT / "benchmarks" / "results" / "results.json").read_text(encoding="utf-8"))
    assert scaling.shown(ROOT / "docs" / "scaling.md") == scaling.section(results), (
        "docs/scaling.md's figures differ from benchmarks/results/results.json; regenerate them from the "
        'repository root with: .venv/bin/python -c "import json, pathlib; from benchmarks import '
        "scaling; scaling.update(pathlib.Path('docs/scaling.md'), "
        "json.loads(pathlib.Path('benchmarks/results/results.json').read_text()))\""
    )
