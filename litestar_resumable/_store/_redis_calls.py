"""The Redis store's calls, sent together: one pipeline per turn of the event loop.

Every script call (create, append, finish, read) and every small read (a stream's meta, a key's holder)
a process makes in one turn of its event loop goes to Redis in one pipeline (on a Redis Cluster, one per
shard, sent in parallel), and each caller gets its own result. At most ``max_in_flight`` pipelines are
out at once; calls made meanwhile wait and go in the next, so batches grow under load instead of
connections (a cluster client that opens a connection per concurrent command fails past its
``max_connections``, where a queue waits).

How a pipeline is sent (on connections of the store's own, with ``WAIT`` after each call when replicas
are asked for, and through redis-py's ``ClusterPipeline`` for a cluster's slots on the move) is
``_redis_shards``.

A script the server does not know (a restarted server, a replica promoted by a failover) is loaded and
the calls that needed it are sent again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from litestar_resumable._store._redis_shards import Shards

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis, RedisCluster
    from redis.asyncio.cluster import ClusterNode

__all__ = ("Script", "ScriptCalls")

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
        self._shards = Shards(redis, cluster=cluster, replicas=replicas, replica_timeout=replica_timeout)

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
            return await self._shards.send_direct(None, batch)
        shards, slow = await self._shards.by_shard(batch)
        results: list[Any] = [None] * len(batch)

        async def send(node: ClusterNode, indices: list[int]) -> None:
            try:
                replies = await self._shards.send_direct(node, [batch[i] for i in indices])
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
            through_cluster = await self._shards.through_cluster([batch[i] for i in slow])
            for i, reply in zip(slow, through_cluster, strict=True):
                results[i] = reply
        return results

    async def _load(self, script: Script) -> None:
        # On a cluster redis-py sends it to every primary; a replica promoted later is loaded then.
        await self.redis.script_load(script.text)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._shards.close()
