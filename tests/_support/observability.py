"""The generated and checked parts of docs/observability.md and docs/grafana-dashboard.json.

The metric table is built from the collectors that ``litestar_resumable._metrics.Metrics`` registers on
a fresh registry (names as Prometheus exposes them, types, labels, buckets, help text), so the page cannot
list a series the code does not have. ``tests/test_docs.py`` checks that the page shows this table and
that every ``resumable_...`` name in the page's PromQL and in the dashboard is a series the registry
exposes. After changing a metric, rewrite the table with (from the repository root)::

    .venv/bin/python tests/_support/observability.py
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from litestar_resumable._metrics import Metrics

ROOT = Path(__file__).resolve().parent.parent.parent
PAGE = ROOT / "docs" / "observability.md"
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
START = "<!-- metrics: generated from litestar_resumable/_metrics.py by tests/_support/observability.py -->"
END = "<!-- metrics: end -->"
REGENERATE = ".venv/bin/python tests/_support/observability.py"
_NAME = re.compile(r"\bresumable_\w+")
_LABEL_VALUES = re.compile(r"label_values\((\w+), *(\w+)\)")  # a Grafana variable's query
_PROMQL = re.compile(r"```promql\n(.*?)```", re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    """As queried: counters with ``_total``, histograms by their base name."""
    type: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...]
    """A histogram's upper bounds, ``+Inf`` left out."""
    help: str


def _registry() -> CollectorRegistry:
    """A fresh registry with the library's collectors, each with one child, so that every series shows."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):
            collector.labels(*("x" for _ in collector._labelnames))  # no public way to read the label names
    return registry


def registered() -> list[Metric]:
    """The library's metrics, in the order it registers them."""
    found = []
    for family in _registry().collect():
        labels = dict.fromkeys(name for sample in family.samples for name in sample.labels if name != "le")
        buckets = sorted(
            {float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")} - {float("inf")}
        )
        found.append(
            Metric(
                family.name + ("_total" if family.type == "counter" else ""),
                family.type,
                tuple(labels),
                tuple(buckets),
                family.documentation,
            )
        )
    return found


def series() -> set[str]:
    """Every sample name the registry exposes: ``_total``, ``_bucket``, ``_sum``, ``_count``, ``_created``."""
    return {sample.name for family in _registry().collect() for sample in family.samples}


def metric_table() -> str:
    """The Markdown block that docs/observability.md shows between ``START`` and ``END``."""

    def bounds(metric: Metric) -> str:
        return ", ".join(f"{bound:g}" for bound in metric.buckets)

    return "\n".join(
        [
            START,
            "| metric | type | labels | buckets (seconds) | help |",
            "|---|---|---|---|---|",
            *(
                f"| `{m.name}` | {m.type} | {', '.join(f'`{label}`' for label in m.labels)} | {bounds(m)} "
                f"| {m.help} |"
                for m in registered()
            ),
            END,
        ]
    )


def shown(path: Path = PAGE) -> str:
    """The block the page shows now, markers included."""
    text = path.read_text(encoding="utf-8")
    return text[text.index(START) : text.index(END) + len(END)]


def names_in(text: str) -> set[str]:
    """Every ``resumable_...`` name in ``text``."""
    return set(_NAME.findall(text))


def page_queries(path: Path = PAGE) -> list[str]:
    """The page's PromQL: its ```` ```promql ```` blocks, one query a line."""
    text = path.read_text(encoding="utf-8")
    return [line for block in _PROMQL.findall(text) for line in block.splitlines() if line.strip()]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, those inside rows included."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """The dashboard's PromQL: every target's ``expr`` and every query variable's ``query``."""
    queries = [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            queries.append(query["query"] if isinstance(query, dict) else query)
    return queries


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def grafana_to_promql(query: str) -> str:
    """A dashboard query as Prometheus takes it: Grafana's variables replaced by values they can have."""
    query = _LABEL_VALUES.sub(r"count by (\2) (\1)", query)
    return query.replace("$__rate_interval", "5m").replace("$route", ".*")


def block_after(marker: str, path: Path = PAGE) -> list[str]:
    """The lines of the first fenced block after ``marker`` in the page."""
    text = path.read_text(encoding="utf-8")
    after = text[text.index(marker) :]
    start = after.index("```\n") + len("```\n")
    return after[start : after.index("```", start)].splitlines()


def log_steps(path: Path = PAGE) -> list[tuple[str, str, tuple[str, ...]]]:
    """The page's table of log steps: each step, its level and its fields."""
    text = path.read_text(encoding="utf-8")
    table = text[text.index("<!-- log steps: checked") :].split("\n\n", 1)[0]
    rows = [line.strip("|").split("|") for line in table.splitlines()[3:]]
    return [
        (step.strip(" `"), level.strip(), tuple(re.findall(r"`(\w+)`", fields)))
        for step, level, fields in rows
    ]


def count_one_generation() -> None:
    """What one process of a server in prometheus-client's multiprocess mode counts for a generation of
    route ``r`` that is still running when the process exits."""
    from prometheus_client import REGISTRY  # noqa: PLC0415 - the registry of the process, after its env

    metrics = Metrics(REGISTRY)
    metrics.child(metrics.started, "r").inc()
    metrics.child(metrics.running, "r").inc()


def scrape_with_litestar() -> None:
    """Print what Litestar's ``PrometheusController`` answers in this process."""
    from litestar import Litestar  # noqa: PLC0415
    from litestar.plugins.prometheus import PrometheusController  # noqa: PLC0415
    from litestar.testing import TestClient  # noqa: PLC0415

    with TestClient(Litestar([PrometheusController])) as client:
        sys.stdout.write(client.get("/metrics").text)


def rewrite(path: Path = PAGE) -> bool:
    """Put the current table into ``path``; True if that changed the file."""
    text = path.read_text(encoding="utf-8")
    before, rest = text.split(START, 1)
    new = before + metric_table() + rest.split(END, 1)[1]
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


if __name__ == "__main__":
    changed = rewrite()
    sys.stdout.write(f"{PAGE.relative_to(ROOT)}: {'rewritten' if changed else 'up to date'}\n")
