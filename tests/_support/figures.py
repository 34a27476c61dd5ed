"""Figures the fault tests measure: printed, and merged into ``/tmp/fault-figures.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

FIGURES_FILE = Path("/tmp/fault-figures.json")  # noqa: S108 - a file for people to read after a run


def record(name: str, **figures: Any) -> None:
    """Print a test's measurements and merge them into ``FIGURES_FILE``."""
    print(f"[fault figures] {name}: {json.dumps(figures, sort_keys=True)}")  # noqa: T201
    try:
        collected = json.loads(FIGURES_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        collected = {}
    collected[name] = {**figures, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    FIGURES_FILE.write_text(json.dumps(collected, indent=2, sort_keys=True) + "\n", encoding="utf-8")
