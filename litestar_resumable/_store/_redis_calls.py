"""The Redis store's calls, sent together: one pipeline per turn of the event loop.

Every script call (create, append, finish, read) and every small read (a stream's meta, a key's holder)
a process makes in one turn of its event loop goes to Redis in one pipeline (on a Redis Cluster, one per
shard, sent in parallel), and each caller gets its own result. At most ``max_in_flight`` pipelines are
out at once; calls made meanwhile wait and go in the next, so batches grow under load instead of
connections (a cluster client that opens a connection per concurrent command fails past its
``max_connections``, where a queue waits).

A pipeline is written straight to a connection the store keeps for itself (per shard on a cluster), its
commands packed by hiredis when it is installed: redis-py's own pipelines cost most of a command's time
in Python (a pool checkout with its timeout, a pipeline object, packing in Python; on a cluster also the
command's parsing and routing), which at thousands of writes a second is most of a core (benchmarks/).
On a cluster a call whose shard answers with a redirect (``MOVED``, ``ASK``: slots moved) or cannot be
reached (a failover) is sent again through redis-py's ``ClusterPipeline``, which follows redirects,
refreshes the map of slots and retries.

With ``replicas > 0`` each call is followed in its pipeline by ``WAIT replicas timeout`` on the same
connection (on a cluster, the same shard's connection), and it counts as done only once that many replicas
have it: fewer raises :class:`StoreUnavailableError`, and the caller retries (a retried append whose
events are stored already only renews the lease).

A script the server does not know (a restarted server, a replica promoted by a failover) is loaded and
the calls that needed it are sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from litestar_resumable._errors import StoreUnavailableError

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - the redis extra brings hiredis
    _hiredis_pack = None

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.cluster import ClusterNode
    from redis.asyncio.connection import AbstractConnection

__all__ = ("Script", "ScriptCalls")

_BATCH_TIMEOUT = 10.0  # a pipeline's bound when the client sets no socket_timeout
_REDIRECTED = (MovedError, AskError, TryAgainError, ClusterDownError)  # a shard's "not here, not now"
_UNREACHED = (RedisConnectionError, RedisTimeoutError, OSError, RedisClusterException)
COALESCE = (
    0.0005  # seconds between two pipelines at the most (benchmarks/: a third of the CPU at 500 streams)
)


@dataclass(frozen=True)
class Script:
    """A Lua script, its name and its SHA1 (redis-py computes it the same way)."""

    name: str
    text: str
    sha: str


class _Call:
    __slots__ = ("command", "done", "key", "script")

    def __init__(
        self, command: tuple[Any, ...], key: str, script: Script | None, done: asyncio.Future[Any]
    ) -> None:
        self.command = command
        self.key = key  # what routes it to its shard on a cluster
        self.script = script  # reloaded if the server does not know it
        self.done = done


class ScriptCalls:
    """Queues calls and sends each turn's calls in one pipeline (one per shard on a cluster)."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        cluster: bool,
        replicas: int = 0,
        replica_timeout: float = 1.0,
        max_in_flight: int = 2,
    ) -> None:
        self.redis = redis
        self.cluster = cluster
        self.replicas = replicas
        self.replica_timeout_ms = max(1, round(replica_timeout * 1000))
        self.max_in_flight = max_in_flight
        self.pipelines = 0
        """Pipelines sent so far: a round trip each (the benchmarks read it)."""
        self.calls: Counter[str] = Counter()
        """Calls sent so far, by script name or command (the benchmarks read it)."""
        self._queued: list[_Call] = []
        self._scheduled = False
        self._last_sent = -COALESCE
        self._last_batch = 0
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle: dict[str, list[AbstractConnection]] = {}  # the store's own connections by shard, unused
        self._held: list[AbstractConnection] = []
        timeout = None if cluster else redis.connection_pool.connection_kwargs.get("socket_timeout")  # type: ignore[union-attr]
        self._batch_timeout: float = timeout if timeout is not None else _BATCH_TIMEOUT

    def call(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> asyncio.Future[Any]:
        """Run ``script`` with ``keys`` and ``args`` in this turn's pipeline; await its result."""
        self.calls[script.name] += 1
        return self._queue(("EVALSHA", script.sha, len(keys), *keys, *args), keys[0], script)

    def command(self, *command: Any) -> asyncio.Future[Any]:
        """Send a command on one key (its second part) in this turn's pipeline; await its raw reply."""
        self.calls[command[0].lower()] += 1
        return self._queue(command, command[1], None)

    def _queue(self, command: tuple[Any, ...], key: str, script: Script | None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._queued.append(_Call(command, key, script, done))
        if not self._scheduled:
            # Send at once, unless the process is busy (the last pipeline, less than COALESCE ago, had
            # several calls): then when that much has passed, with everything called meanwhile. A quiet
            # process waits for nothing; a busy one sends a pipeline every half millisecond at most.
            self._scheduled = True
            busy = self._last_batch > 1 and loop.time() < self._last_sent + COALESCE
            if busy:
                loop.call_at(self._last_sent + COALESCE, self._send)
            else:
                loop.call_soon(self._send)
        return done

    def _send(self) -> None:
        self._scheduled = False
        if not self._queued or self._in_flight >= self.max_in_flight:
            return  # the next pipeline to finish sends what is queued
        self._last_sent = asyncio.get_running_loop().time()
        batch, self._queued = self._queued, []
        self._last_batch = len(batch)
        self._in_flight += 1
        task = asyncio.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Call]) -> None:
        try:
            results = await self._execute(batch)
        except BaseException as exc:  # noqa: BLE001 - every caller gets what went wrong
            for call in batch:
                if not call.done.done():
                    call.done.set_exception(exc)
        else:
            for call, result in zip(batch, results, strict=True):
                if call.done.done():
                    continue
                if isinstance(result, BaseException):
                    call.done.set_exception(result)
                else:
                    call.done.set_result(result)
        finally:
            self._in_flight -= 1
            if self._queued and not self._scheduled:
                self._send()

    async def _execute(self, batch: list[_Call]) -> list[Any]:
        self.pipelines += 1
        results = await self._pipeline(batch)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            for script in {batch[i].script for i in missing}:
                if script is not None:
                    await self._load(script)
            retried = await self._pipeline([batch[i] for i in missing])
            for i, result in zip(missing, retried, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        if not self.cluster:
            return await self._send_direct(None, batch)
        shards, slow = await self._shards(batch)
        results: list[Any] = [None] * len(batch)

        async def send(node: ClusterNode, indices: list[int]) -> None:
            try:
                replies = await self._send_direct(node, [batch[i] for i in indices])
            except _UNREACHED:
                slow.extend(indices)  # moved or failed over: the cluster client finds where it went
                return
            for i, reply in zip(indices, replies, strict=True):
                if isinstance(reply, _REDIRECTED):
                    slow.append(i)
                else:
                    results[i] = reply

        await asyncio.gather(*(send(node, indices) for node, indices in shards.values()))
        if slow:
            for i, reply in zip(slow, await self._cluster_pipeline([batch[i] for i in slow]), strict=True):
                results[i] = reply
        return results

    async def _shards(self, batch: list[_Call]) -> tuple[dict[str, tuple[ClusterNode, list[int]]], list[int]]:
        """The batch's calls by the shard that serves their slot, and those of slots no shard serves now."""
        nodes = self.redis.nodes_manager  # type: ignore[union-attr]
        if not nodes.slots_cache:
            await self.redis.initialize()
        shards: dict[str, tuple[ClusterNode, list[int]]] = {}
        unserved: list[int] = []
        for i, call in enumerate(batch):
            try:
                node = nodes.get_node_from_slot(self.redis.keyslot(call.key))  # type: ignore[union-attr]
            except RedisClusterException:  # a failover under way
                unserved.append(i)
            else:
                shards.setdefault(node.name, (node, []))[1].append(i)
        return shards, unserved

    async def _cluster_pipeline(self, batch: list[_Call]) -> list[Any]:
        """The batch through redis-py's ``ClusterPipeline``: slower, and it follows slots wherever they go."""
        if self.replicas:
            await self.redis.initialize()  # the map of slots, to send each WAIT to its call's shard
        pipe = self.redis.pipeline(transaction=False)
        for call in batch:
            pipe.execute_command(*call.command)
            if self.replicas:
                # WAIT counts the writes of its own connection: the shard's, in the pipeline's batch for it.
                node = self.redis.get_node_from_key(call.key)  # type: ignore[union-attr]
                pipe.execute_command("WAIT", self.replicas, self.replica_timeout_ms, target_nodes=node)
        return self._pair(await pipe.execute(raise_on_error=False))

    def _pair(self, replies: Sequence[Any]) -> list[Any]:
        """Each call's result, from the replies of its command (and of its WAIT, with replicas)."""
        if not self.replicas:
            return list(replies)
        return [
            self._replicated(result, acknowledged)
            for result, acknowledged in zip(replies[::2], replies[1::2], strict=True)
        ]

    async def _send_direct(self, node: ClusterNode | None, batch: list[_Call]) -> list[Any]:
        """The batch's commands, written at once on a connection of the store's own (to ``node``, a
        cluster's shard); their results.

        The connection has no timeout per read: the whole batch has one, the client's ``socket_timeout``.
        On a standalone Redis a connection that fails (a restarted server, say) is dropped and the batch
        sent once more on a new one, as redis-py retries a command: every script of the store can run twice
        to the same effect. On a cluster the caller sends it through the cluster client instead.
        """
        commands: list[tuple[Any, ...]] = []
        for call in batch:
            commands.append(call.command)
            if self.replicas:
                commands.append(("WAIT", self.replicas, self.replica_timeout_ms))
        name = "" if node is None else node.name
        try:
            replies = await self._exchange(node, commands)
        except (RedisConnectionError, RedisTimeoutError):
            # The server went away, or came back: every kept connection to it is stale, not just this one.
            for connection in self._idle.get(name, []):
                await connection.disconnect(nowait=True)
            if node is not None:
                raise
            replies = await self._exchange(node, commands)
        return self._pair(replies)

    async def _exchange(self, node: ClusterNode | None, commands: list[tuple[Any, ...]]) -> list[Any]:
        connection = self._connection(node)
        if _hiredis_pack is not None:
            payload = b"".join(_hiredis_pack(command) for command in commands)
        else:
            payload = b"".join(connection.pack_commands(commands))
        replies: list[Any] = []
        try:
            async with asyncio.timeout(self._batch_timeout):
                if not connection.is_connected:
                    await connection.connect()  # type: ignore[no-untyped-call] # redis-py's stubs
                await connection.send_packed_command(payload, check_health=False)
                for _ in commands:
                    try:
                        replies.append(await connection.read_response())
                    except ResponseError as error:  # this command's error; the connection is fine
                        replies.append(error)
        except TimeoutError as exc:
            await connection.disconnect(nowait=True)
            raise RedisTimeoutError(f"Redis did not answer within {self._batch_timeout} s") from exc
        except BaseException:
            await connection.disconnect(nowait=True)  # its replies are out of step; it reconnects on use
            raise
        finally:
            self._idle.setdefault("" if node is None else node.name, []).append(connection)
        return replies

    def _connection(self, node: ClusterNode | None) -> AbstractConnection:
        """An unused connection of the store's own (to ``node``, a cluster's shard), made as the client
        makes them, less the timeout per read."""
        idle = self._idle.get("" if node is None else node.name)
        if idle:
            return idle.pop()
        if node is None:
            pool = self.redis.connection_pool  # type: ignore[union-attr]
            connection_class, kwargs = pool.connection_class, pool.connection_kwargs
        else:
            connection_class, kwargs = node.connection_class, node.connection_kwargs
        connection: AbstractConnection = connection_class(**{**kwargs, "socket_timeout": None})
        self._held.append(connection)
        return connection

    def _replicated(self, result: Any, acknowledged: Any) -> Any:
        """A call's result, or why it does not count as done: a failed WAIT, or too few replicas."""
        if isinstance(result, BaseException):
            return result
        if isinstance(acknowledged, BaseException):
            return acknowledged
        if int(acknowledged) < self.replicas:
            return StoreUnavailableError(
                f"{acknowledged} of the {self.replicas} replicas asked for took the write in time"
            )
        return result

    async def _load(self, script: Script) -> None:
        # On a cluster redis-py sends it to every primary; a replica promoted later is loaded then.
        await self.redis.script_load(script.text)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        held, self._held, self._idle = self._held, [], {}
        for connection in held:
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect()
