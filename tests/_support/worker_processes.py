"""Job-queue worker processes for ``test_workers.py``: started in a process group of their own, ready when
they say so (their pid pushed to ``jobs.ready_key``, waited for with ``BLPOP``), killed as a group.

    worker = WorkerProcess("saq", SAQ_WORKER, env)
    worker.start()
    worker.wait_ready()
    worker.kill()  # SIGKILL to the whole group: the job dies mid-answer
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from redis import Redis

from _support.jobs import ready_key
from _support.servers import TESTS_DIR

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 8.0

SAQ_WORKER = [
    "-m",
    "litestar",
    "--app-dir",
    str(TESTS_DIR),
    "--app",
    "_support.worker_app:app",
    "workers",
    "run",
]
CELERY_WORKER = [
    "-m",
    "celery",
    "-A",
    "_support.celery_worker",
    "worker",
    "--pool=solo",
    "--without-mingle",
    "--without-gossip",
    "--without-heartbeat",
    "--loglevel=WARNING",
]


class WorkerProcess:
    """One worker process (``python <args>`` from ``tests/``) with its own environment."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str]) -> None:
        self.name = name
        self.args = args
        self.env = dict(env)
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_pid: int | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        # Never inherit the runner's own E2E_* settings: the worker gets exactly what it is given.
        env = {k: v for k, v in os.environ.items() if not k.startswith("E2E_")}
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), env.get("PYTHONPATH")]))
        self._close_log()
        self._log = tempfile.NamedTemporaryFile(prefix=f"worker-{self.name}-", suffix=".log")  # noqa: SIM115
        self.ready_pid = None
        self.process = subprocess.Popen(
            [sys.executable, *self.args],
            cwd=TESTS_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own, killed as one
        )

    def output(self) -> str:
        if self._log is None:
            return ""
        return Path(self._log.name).read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Wait for the worker's pid on its ready list; raise if it dies first or takes over ``timeout``."""
        assert self.process is not None, "the worker is not started"
        client = Redis.from_url(self.env["E2E_REDIS_URL"])
        key = ready_key(self.env["E2E_KEY_PREFIX"], self.name)
        deadline = time.monotonic() + timeout
        try:
            while self.ready_pid != self.process.pid:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"worker {self.name} exited with {self.process.returncode}:\n{self.output()}"
                    )
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"worker {self.name} was not ready within {timeout} s:\n{self.output()}"
                    )
                popped = client.blpop([key], timeout=0.5)  # short, to look at the process between waits
                if popped is not None:
                    self.ready_pid = int(popped[1])
        finally:
            client.close()

    def ensure_running(self) -> None:
        """Start the worker again if a test killed it."""
        if not self.alive:
            self.start()
            self.wait_ready()

    def _signal_group(self, signum: signal.Signals) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL to the whole group: every process of the worker dies at once, with no shutdown."""
        if self.process is not None:
            self._signal_group(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM to the group (the worker's own shutdown), SIGKILL after ``STOP_TIMEOUT``."""
        try:
            if self.process is not None:
                self._signal_group(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(STOP_TIMEOUT)
                self.kill()  # and whatever of its group is left
        finally:
            self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
