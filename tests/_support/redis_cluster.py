"""A Redis Cluster of the tests' own: six ``redis-server`` processes (three masters, each with one replica)
on free ports, joined by ``redis-cli --cluster create``; any node can be killed, a failover waited for,
and the node started again.

    cluster = RedisCluster(tmp_path)
    cluster.start()  # returns once every node sees a healthy cluster
    try:
        port = cluster.master_of_key("some-key")
        cluster.kill(port)
        new_master = cluster.wait_failover(port, timeout=20)
        cluster.restart(port)  # rejoins as a replica of new_master
    finally:
        cluster.stop()  # kills every node and removes its files

Every wait is bounded and fails with :class:`ClusterError`, whose message has the tail of each node's log.
The methods block: an async test that must keep its event loop running (a client working through a
failover) calls the slow ones (``wait_failover``, ``restart``, ``wait_healthy``) via ``asyncio.to_thread``.
Nodes run with ``--save '' --appendonly no``: a killed node restarts empty and gets its data from a master.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

import pytest
from redis import Redis
from redis.exceptions import RedisError

from _support.servers import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
HOST = "127.0.0.1"
SLOTS = 16384
BUS_PORT_OFFSET = 10000  # Redis's default cluster bus port: the client port + 10000
POLL_INTERVAL = 0.05
LOG_TAIL_LINES = 25


def need_cluster_tools() -> None:
    """Skip the calling test when redis-server or redis-cli is missing, or fail when the run requires
    Redis (``RESUMABLE_REQUIRE_REDIS=1``, as ``.ci/run`` sets)."""
    missing = [path for path in (REDIS_SERVER, REDIS_CLI) if not Path(path).exists()]
    if not missing:
        return
    problem = f"these tests start their own Redis Cluster, and {' and '.join(missing)} is not installed"
    if os.environ.get("RESUMABLE_REQUIRE_REDIS") == "1":
        pytest.fail(f"RESUMABLE_REQUIRE_REDIS=1 but {problem}")
    pytest.skip(problem)


class ClusterError(RuntimeError):
    """The cluster did not come up, or did not reach the state waited for, in time."""


@dataclass(frozen=True)
class NodeView:
    """One line of ``CLUSTER NODES``: how the node that answered sees a node of the cluster."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None  # the master it replicates, for a replica
    link: str  # "connected" or "disconnected": the cluster bus link
    slots: tuple[tuple[int, int], ...]  # inclusive ranges; migrating/importing markers left out

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failing(self) -> bool:
        """Flagged as failed (``fail``), suspected (``fail?``), or not yet a full member."""
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})

    @classmethod
    def parse(cls, line: str) -> NodeView:
        # <id> <ip:port@cport[,hostname]> <flags> <master> <ping-sent> <pong-recv> <epoch> <link> <slot>...
        fields = line.split()
        address = fields[1].split("@", 1)[0]
        slots: list[tuple[int, int]] = []
        for spec in fields[8:]:
            if spec.startswith("["):
                continue  # [slot->-node] / [slot-<-node]: a slot being moved, not owned
            start, _, end = spec.partition("-")
            slots.append((int(start), int(end or start)))
        return cls(
            id=fields[0],
            port=int(address.rsplit(":", 1)[1] or 0),
            flags=frozenset(fields[2].split(",")),
            master_id=None if fields[3] == "-" else fields[3],
            link=fields[7],
            slots=tuple(sorted(slots)),
        )


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def _cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    for _ in range(200):
        port = free_port()
        bus = port + BUS_PORT_OFFSET
        if bus <= 65535 and not taken & {port, bus} and _port_is_free(bus):
            return port
    raise ClusterError("found no free pair of ports (client port, client port + 10000)")


class _Node:
    """One ``redis-server`` process of the cluster, in a directory of its own."""

    def __init__(self, port: int, root: Path, node_timeout_ms: int, extra_args: tuple[str, ...]) -> None:
        self.port = port
        self.root = root
        self.dir = root / f"node-{port}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.node_timeout_ms = node_timeout_ms
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.dir / "redis.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def output(self) -> Path:
        """stdout and stderr: where a bad option is reported, before the log file is opened."""
        return self.dir / "output.log"

    def spawn(self) -> None:
        with self.output.open("ab") as output:
            self.process = self._popen(output)

    def _popen(self, output: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--daemonize",
                "no",
                "--dir",
                str(self.dir),
                "--logfile",
                str(self.log),
                "--save",
                "",
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(self.root / f"nodes-{self.port}.conf"),
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                # Redis 7 waits 5 s before a diskless full sync (for more replicas to join it): a replica
                # of the tests' own would sit out that wait after every start and restart.
                "--repl-diskless-sync-delay",
                "0",
                *self.extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def address_in_use(self) -> bool:
        return not self.alive and "Address already in use" in self.log_tail()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        text = ""
        for path in (self.output, self.log):
            with contextlib.suppress(OSError):
                text += path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])


_RUNNING: weakref.WeakSet[RedisCluster] = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:
    """Kill the nodes of any cluster still running when the interpreter exits (a test run interrupted)."""
    for cluster in list(_RUNNING):
        cluster.stop()


class RedisCluster:
    """Six ``redis-server`` nodes on 127.0.0.1 made into one cluster: three masters, three replicas.

    ``node_timeout_ms`` is ``cluster-node-timeout``: how long a node must be unreachable before it is
    suspected failed. At the default of 1000 ms a killed master's replica takes over in about 2-3 s.
    ``extra_args`` are added to every node's ``redis-server`` command line.
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        masters: int = 3,
        replicas_per_master: int = 1,
        node_timeout_ms: int = 1000,
        start_timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.masters_count = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        self.start_timeout = start_timeout
        self.extra_args = extra_args
        self._parent = root
        self._root: Path | None = None
        self._nodes: dict[int, _Node] = {}
        self._ids: dict[int, str] = {}  # port -> node id, learnt once the cluster is up
        self._killed_slots: dict[int, tuple[tuple[int, int], ...]] = {}
        self.started_in: float | None = None  # seconds start() took

    # -- lifecycle --

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every node, create the cluster, and return once it is healthy (see :meth:`wait_healthy`)."""
        if self._nodes:
            raise ClusterError("this cluster has been started already")
        began = time.monotonic()
        deadline = began + self.start_timeout
        if self._parent is not None:
            self._parent.mkdir(parents=True, exist_ok=True)
        self._root = Path(tempfile.mkdtemp(prefix="redis-cluster-", dir=self._parent))
        _RUNNING.add(self)
        try:
            taken: set[int] = set()
            for _ in range(self.masters_count * (1 + self.replicas_per_master)):
                port = _cluster_port(taken)
                taken |= {port, port + BUS_PORT_OFFSET}
                self._nodes[port] = _Node(port, self._root, self.node_timeout_ms, self.extra_args)
            for node in self._nodes.values():
                node.spawn()
            self._wait_answering(list(self._nodes), deadline, taken, may_move=True)
            self._create(deadline)
            self.wait_healthy(max(deadline - time.monotonic(), 0.1))
            self._ids = {view.port: view.id for view in self._view(self.ports[0])}
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began

    def stop(self) -> None:
        """Kill every node (SIGKILL) and remove the cluster's files. Safe to call more than once."""
        for node in self._nodes.values():
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                node.kill()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
        _RUNNING.discard(self)

    def _wait_answering(self, ports: list[int], deadline: float, taken: set[int], *, may_move: bool) -> None:
        """Wait until each node answers PING; before the cluster is created, a node whose port was taken
        meanwhile moves to another."""
        waiting = list(ports)
        while waiting:
            for port in list(waiting):
                node = self._nodes[port]
                if node.alive and self._answers(node):
                    waiting.remove(port)
                elif may_move and node.address_in_use():
                    # Someone took the port between our probe and the bind: a new pair, a new node.
                    del self._nodes[port]
                    new_port = _cluster_port(taken)
                    taken |= {new_port, new_port + BUS_PORT_OFFSET}
                    assert self._root is not None
                    replacement = _Node(new_port, self._root, self.node_timeout_ms, self.extra_args)
                    self._nodes[new_port] = replacement
                    replacement.spawn()
                    waiting[waiting.index(port)] = new_port
                elif not node.alive:
                    code = node.process.returncode if node.process else None
                    raise self._error(f"redis-server on port {port} exited with {code} before answering")
            if waiting and time.monotonic() > deadline:
                raise self._error(f"redis-server did not answer PING in time on ports {waiting}")
            if waiting:
                time.sleep(POLL_INTERVAL)

    def _create(self, deadline: float) -> None:
        command = [
            REDIS_CLI,
            "--cluster",
            "create",
            *(f"{HOST}:{port}" for port in self.ports),
            "--cluster-replicas",
            str(self.replicas_per_master),
            "--cluster-yes",
        ]
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(deadline - time.monotonic(), 1.0),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode(errors="replace")
            raise self._error(f"redis-cli --cluster create did not finish in time:\n{output}") from exc
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            raise self._error(f"redis-cli --cluster create exited with {result.returncode}:\n{output}")

    # -- where things are --

    @property
    def ports(self) -> list[int]:
        """Every node's client port, in the order they were started (killed ones included)."""
        return list(self._nodes)

    @property
    def urls(self) -> list[str]:
        return [f"redis://{HOST}:{port}" for port in self._nodes]

    @property
    def url(self) -> str:
        """A master's URL: a startup node for ``redis.asyncio.RedisCluster.from_url``."""
        return f"redis://{HOST}:{self.masters()[0]}"

    def node_id(self, port: int) -> str:
        return self._ids[port]

    def alive(self, port: int) -> bool:
        return self._nodes[port].alive

    def client(self, port: int, **options: Any) -> Redis:
        """A plain (non-cluster) client on one node; ``decode_responses`` unless told otherwise."""
        options.setdefault("decode_responses", True)
        options.setdefault("socket_connect_timeout", 1)
        options.setdefault("socket_timeout", 2)
        return Redis(host=HOST, port=port, **options)

    def nodes(self) -> list[NodeView]:
        """``CLUSTER NODES`` as a live node sees it (the first one that answers)."""
        problems = []
        for port in self._alive_ports():
            try:
                return self._view(port)
            except (RedisError, OSError) as exc:
                problems.append(f"{port}: {exc}")
        raise ClusterError(f"no node answered CLUSTER NODES: {problems}")

    def masters(self) -> list[int]:
        """Ports of the masters that serve slots, are running and are not flagged failed."""
        return sorted(
            view.port
            for view in self.nodes()
            if view.is_master and view.slots and not view.failing and self._is_alive_port(view.port)
        )

    def replicas(self) -> list[int]:
        """Ports of the running replicas not flagged failed."""
        return sorted(
            view.port
            for view in self.nodes()
            if not view.is_master and not view.failing and self._is_alive_port(view.port)
        )

    def replicas_of(self, master_port: int) -> list[int]:
        views = self.nodes()
        master_id = next(view.id for view in views if view.port == master_port)
        return sorted(view.port for view in views if view.master_id == master_id)

    def slot_ranges(self) -> list[tuple[int, int, int]]:
        """``(first slot, last slot, master port)`` for every range of slots, in order."""
        return sorted(
            (start, end, view.port) for view in self.nodes() if view.is_master for start, end in view.slots
        )

    def master_of_slot(self, slot: int) -> int:
        for start, end, port in self.slot_ranges():
            if start <= slot <= end:
                return port
        raise ClusterError(f"no master serves slot {slot}")

    def keyslot(self, key: str | bytes) -> int:
        """The key's hash slot, as the cluster computes it (``CLUSTER KEYSLOT``)."""
        for port in self._alive_ports():
            with contextlib.suppress(RedisError, OSError), self.client(port) as client:
                return int(client.execute_command("CLUSTER", "KEYSLOT", key))
        raise ClusterError("no node answered CLUSTER KEYSLOT")

    def master_of_key(self, key: str | bytes) -> int:
        return self.master_of_slot(self.keyslot(key))

    # -- faults --

    def kill(self, port: int) -> None:
        """SIGKILL one node: it stops at once, with no goodbye to the cluster."""
        with contextlib.suppress(ClusterError, StopIteration):
            self._killed_slots[port] = next(view.slots for view in self.nodes() if view.port == port)
        self._nodes[port].kill()

    def restart(self, port: int, *, timeout: float = 30.0, wait: bool = True) -> None:
        """Start a killed node again, with its own ``nodes.conf`` (so its old identity) and no data. It
        rejoins the cluster; a master that was failed over comes back as its successor's replica. With
        ``wait``, returns once the whole cluster is healthy again (:meth:`wait_healthy`)."""
        node = self._nodes[port]
        if node.alive:
            raise ClusterError(f"node {port} is running; kill it first")
        deadline = time.monotonic() + timeout
        node.spawn()
        self._wait_answering([port], deadline, set(), may_move=False)
        self._killed_slots.pop(port, None)
        if wait:
            self.wait_healthy(max(deadline - time.monotonic(), 0.1))

    def wait_failover(self, old_master_port: int, timeout: float = 30.0) -> int:
        """Wait until a replica has taken over the slots of the master on ``old_master_port`` (killed with
        :meth:`kill`), every running node agrees on it and reports ``cluster_state:ok``. Returns the new
        master's port."""
        slots = self._killed_slots.get(old_master_port)
        if not slots:
            raise ClusterError(f"node {old_master_port} served no slots when it was killed")
        first_slot = slots[0][0]
        deadline = time.monotonic() + timeout
        problem = "not checked yet"
        while time.monotonic() < deadline:
            problem = self._problem(require_replicas=False)
            if problem is None:
                owner = self.master_of_slot(first_slot)
                taken_over = all(self.master_of_slot(start) == owner for start, _ in slots)
                if owner != old_master_port and taken_over:
                    return owner
                problem = f"slot {first_slot} is still served by {owner}"
            time.sleep(POLL_INTERVAL)
        raise self._error(f"no replica took over from {old_master_port} within {timeout} s: {problem}")

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` with all slots served, all agree on
        who serves which slots, no running node is flagged failed, and every master has a running replica
        whose replication link is up."""
        deadline = time.monotonic() + timeout
        problem = "not checked yet"
        while time.monotonic() < deadline:
            problem = self._problem(require_replicas=True)
            if problem is None:
                return
            time.sleep(POLL_INTERVAL)
        raise self._error(f"the cluster was not healthy within {timeout} s: {problem}")

    # -- state checks --

    def _alive_ports(self) -> list[int]:
        return [port for port, node in self._nodes.items() if node.alive]

    def _is_alive_port(self, port: int) -> bool:
        node = self._nodes.get(port)
        return node is not None and node.alive

    def _answers(self, node: _Node) -> bool:
        """The node's own process (not whoever else may listen on its port) answers."""
        assert node.process is not None
        try:
            with self.client(node.port, socket_timeout=1) as client:
                return int(client.info("server")["process_id"]) == node.process.pid
        except (RedisError, OSError):
            return False

    def _view(self, port: int) -> list[NodeView]:
        with self.client(port) as client:
            text = client.execute_command("CLUSTER", "NODES")
        return [NodeView.parse(line) for line in str(text).splitlines() if line.strip()]

    def _cluster_info(self, port: int) -> dict[str, str]:
        with self.client(port) as client:
            text = client.execute_command("CLUSTER", "INFO")
        pairs = (line.split(":", 1) for line in str(text).splitlines() if ":" in line)
        return {key.strip(): value.strip() for key, value in pairs}

    def _replication_info(self, port: int) -> dict[str, str]:
        with self.client(port) as client:
            return {str(key): str(value) for key, value in client.info("replication").items()}

    def _problem(self, *, require_replicas: bool) -> str | None:
        """What keeps the cluster from the state waited for, or None when it is there."""
        reference: list[tuple[int, int, int]] | None = None
        try:
            for port in self._alive_ports():
                views = self._view(port)
                problem = self._state_problem(port) or self._view_problem(views)
                if problem is None and require_replicas:
                    problem = self._replication_problem(views)
                if problem is not None:
                    return f"node {port}: {problem}"
                ranges = sorted((s, e, v.port) for v in views if v.is_master for s, e in v.slots)
                if reference is None:
                    reference = ranges
                elif ranges != reference:
                    return f"nodes disagree on who serves which slots: {reference} vs {ranges} (node {port})"
        except (RedisError, OSError) as exc:
            return f"a node did not answer: {exc!r}"
        return None

    def _state_problem(self, port: int) -> str | None:
        info = self._cluster_info(port)
        if info.get("cluster_state") != "ok":
            return f"cluster_state:{info.get('cluster_state')}"
        if info.get("cluster_slots_ok") != str(SLOTS):
            return f"cluster_slots_ok:{info.get('cluster_slots_ok')}"
        return None

    def _view_problem(self, views: list[NodeView]) -> str | None:
        if len(views) != len(self._nodes):
            return f"knows {len(views)} of {len(self._nodes)} nodes"
        for view in views:
            if self._is_alive_port(view.port) and (view.failing or view.link != "connected"):
                return f"sees {view.port} as {','.join(sorted(view.flags))} {view.link}"
        ranges = sorted((s, e, v.port) for v in views if v.is_master for s, e in v.slots)
        if sum(e - s + 1 for s, e, _ in ranges) != SLOTS:
            return f"sees slots served {ranges}"
        if dead := sorted({owner for _, _, owner in ranges if not self._is_alive_port(owner)}):
            return f"sees slots still served by killed nodes {dead}"
        return None

    def _replication_problem(self, views: list[NodeView]) -> str | None:
        by_id = {view.id: view for view in views}
        for master in (view for view in views if view.is_master and view.slots):
            replicas = [
                view
                for view in views
                if view.master_id == master.id and self._is_alive_port(view.port) and not view.failing
            ]
            if not replicas:
                return f"master {master.port} has no running replica"
            for replica in replicas:
                info = self._replication_info(replica.port)
                if info.get("role") != "slave" or info.get("master_link_status") != "up":
                    return f"replica {replica.port} of {master.port}: link {info.get('master_link_status')}"
                if info.get("master_port") != str(by_id[master.id].port):
                    return f"replica {replica.port} replicates {info.get('master_port')}, not {master.port}"
        return None

    def _error(self, message: str) -> ClusterError:
        logs = "\n".join(
            f"--- node {port} ({'running' if node.alive else 'not running'}), log tail:\n{node.log_tail()}"
            for port, node in self._nodes.items()
        )
        return ClusterError(f"{message}\n{logs}")
