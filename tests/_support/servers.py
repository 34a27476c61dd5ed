"""Real uvicorn processes (``tests/_support/app.py`` unless told otherwise), for the end-to-end tests.

    with running({"E2E_LEASE": "1"}, {}) as (a, b):
        httpx.get(f"{a.url}/pid")

Servers start together and are waited for together; each is stopped (SIGTERM, then SIGKILL after a
bound) when the block ends, whatever happened inside it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

TESTS_DIR = Path(__file__).resolve().parents[1]
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 8.0
_START_ATTEMPTS = 3


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerError(RuntimeError):
    """A server process did not come up."""


class Server:
    """One uvicorn process with its own environment (``_support.app:app`` from ``tests/`` by default)."""

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        name: str = "server",
        app: str = "_support.app:app",
        app_dir: Path = TESTS_DIR,
        ready_path: str = "/pid",
    ) -> None:
        self.env = dict(env or {})
        self.name = name
        self.app = app
        self.app_dir = app_dir
        self.ready_path = ready_path
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not started"
        return self.process.pid

    def start(self) -> None:
        """Start the process; :meth:`wait_ready` waits for it to answer."""
        # Never inherit the runner's own E2E_* settings: each server gets exactly what it is given.
        env = {k: v for k, v in os.environ.items() if not k.startswith("E2E_")}
        env.update(self.env)
        self.port = free_port()
        self._log = tempfile.NamedTemporaryFile(prefix=f"e2e-{self.name}-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                self.app,
                "--app-dir",
                str(self.app_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        """What the server has written to stdout and stderr so far."""
        if self._log is None:
            return ""
        return Path(self._log.name).read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll ``ready_path`` until this process answers (``/pid``: this very process); raise if it dies."""
        assert self.process is not None, "the server is not started"
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self.process.poll() is not None:
                    code = self.process.returncode
                    raise ServerError(f"{self.name} exited with {code} before answering:\n{self.output()}")
                with contextlib.suppress(httpx.TransportError):
                    response = client.get(f"{self.url}{self.ready_path}")
                    if response.status_code == 200 and (
                        self.ready_path != "/pid" or response.json() == self.process.pid
                    ):
                        return
                if time.monotonic() > deadline:
                    raise ServerError(f"{self.name} did not answer within {timeout} s:\n{self.output()}")
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, without any shutdown of its own."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (uvicorn's graceful shutdown), then SIGKILL if it takes longer than ``timeout``."""
        try:
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout)
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _address_in_use(self) -> bool:
        return self.process is not None and self.process.poll() is not None and "in use" in self.output()


@contextlib.contextmanager
def running(*envs: Mapping[str, str], **options: Any) -> Iterator[list[Server]]:
    """Start one server per environment, wait until all answer, and stop them all at the end."""
    servers = [Server(env, name=f"server{i}", **options) for i, env in enumerate(envs)]
    try:
        for server in servers:
            server.start()
        for server in servers:
            for attempt in range(_START_ATTEMPTS):
                try:
                    server.wait_ready()
                    break
                except ServerError:
                    # Another process may have taken the free port between our probe and uvicorn's bind.
                    if not server._address_in_use() or attempt == _START_ATTEMPTS - 1:
                        raise
                    server.stop()
                    server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
