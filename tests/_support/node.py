"""Node.js for the tests that run JavaScript clients: ``node``, with a directory's locked packages installed.

Node is optional: without it (or npm, when the packages are not installed yet) the tests skip, unless
``RESUMABLE_REQUIRE_NODE=1``, which makes that a failure. A directory's packages are installed with
``npm ci`` from its committed ``package-lock.json`` when ``node_modules`` is missing or not at the locked
versions.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REQUIRE_NODE = os.environ.get("RESUMABLE_REQUIRE_NODE") == "1"
NPM_CI_TIMEOUT = 300


def unavailable(reason: str) -> None:
    """Skip the calling test, or fail it when the run requires Node."""
    if REQUIRE_NODE:
        pytest.fail(f"RESUMABLE_REQUIRE_NODE=1 but {reason}")
    pytest.skip(reason)


def installed_matches_lock(directory: Path) -> bool:
    """Whether every package in ``package-lock.json`` is in ``node_modules`` at its locked version."""
    lock = json.loads((directory / "package-lock.json").read_text(encoding="utf-8"))
    for path, entry in lock["packages"].items():
        if not path or (entry.get("optional") and not (directory / path).is_dir()):
            continue  # the project itself, or an optional package for another platform
        manifest = directory / path / "package.json"
        if not manifest.is_file():
            return False
        if json.loads(manifest.read_text(encoding="utf-8")).get("version") != entry.get("version"):
            return False
    return True


def node_with(directory: Path, *, minimum: int = 18) -> str:
    """The ``node`` executable, with ``directory``'s locked packages installed (``npm ci`` if needed)."""
    executable = shutil.which("node")
    if executable is None:
        unavailable(f"no node on PATH (install Node.js >= {minimum} to run these tests)")
    assert executable is not None
    version = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True).stdout
    major = int(re.match(r"v(\d+)", version.strip()).group(1))  # type: ignore[union-attr]
    if major < minimum:
        unavailable(f"node {version.strip()} is too old; these tests need Node.js >= {minimum}")
    if not installed_matches_lock(directory):
        npm = shutil.which("npm")
        if npm is None:
            unavailable(f"node is on PATH but npm is not, and {directory / 'node_modules'} is not installed")
        assert npm is not None
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=NPM_CI_TIMEOUT,
            check=False,
        )
        if installed.returncode != 0 or not installed_matches_lock(directory):
            pytest.fail(f"npm ci in {directory} failed:\n{installed.stdout}\n{installed.stderr}")
    return executable
