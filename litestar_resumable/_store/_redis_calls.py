"""The Redis store's script calls, sent together: one pipeline per turn of the event loop.

Every script call (create, append, finish, read) a process makes in one turn of its event loop goes to
Redis in one pipeline (on a Redis Cluster, one per shard, sent in parallel), and each caller gets its own
result. Hundreds of streams in one process thus cost a few pipelines a millisecond instead of a
client-side command each: redis-py spends most of a command's time in Python, and a pipeline spreads that
over many commands. At most ``max_in_flight`` pipelines are out at once; calls made meanwhile wait and go
in the next, so batches grow under load instead of connections.

With ``replicas > 0`` each call is followed in its pipeline by ``WAIT replicas timeout`` on the same
connection (on a cluster, the same shard's connection), and it counts as done only once that many replicas
have it: fewer raises :class:`StoreUnavailableError`, and the caller retries (a retried append whose
events are stored already only renews the lease).

A script the server does not know (a restarted server, a replica promoted by a failover) is loaded and
the calls that needed it are sent again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from litestar_resumable._errors import StoreUnavailableError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis, RedisCluster

__all__ = ("Script", "ScriptCalls")


@dataclass(frozen=True)
class Script:
    """A Lua script and its SHA1 (redis-py computes it the same way)."""

    text: str
    sha: str


@dataclass
class _Call:
    script: Script
    keys: Sequence[str]
    args: Sequence[Any]
    done: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class ScriptCalls:
    """Queues script calls and sends each turn's calls in one pipeline."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        cluster: bool,
        replicas: int = 0,
        replica_timeout: float = 1.0,
        max_in_flight: int = 8,
    ) -> None:
        self.redis = redis
        self.cluster = cluster
        self.replicas = replicas
        self.replica_timeout_ms = max(1, round(replica_timeout * 1000))
        self.max_in_flight = max_in_flight
        self.pipelines = 0
        """Pipelines sent so far (the benchmarks read it)."""
        self._queued: list[_Call] = []
        self._scheduled = False
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` with ``keys`` and ``args`` in this turn's pipeline; return its result."""
        call = _Call(script, keys, args)
        self._queued.append(call)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._send)
        return await call.done

    def _send(self) -> None:
        self._scheduled = False
        if not self._queued or self._in_flight >= self.max_in_flight:
            return  # the next pipeline to finish sends what is queued
        batch, self._queued = self._queued, []
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
                await self._load(script)
            retried = await self._pipeline([batch[i] for i in missing])
            for i, result in zip(missing, retried, strict=True):
                results[i] = result
        return results

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        if self.cluster and self.replicas:
            await self.redis.initialize()  # the map of slots, to send each WAIT to its call's shard
        pipe = self.redis.pipeline(transaction=False)
        for call in batch:
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
            if self.replicas:
                # WAIT counts the writes of its own connection: the shard's, in the pipeline's batch for it.
                target: dict[str, Any] = {}
                if self.cluster:
                    target["target_nodes"] = self.redis.get_node_from_key(call.keys[0])  # type: ignore[union-attr]
                pipe.execute_command("WAIT", self.replicas, self.replica_timeout_ms, **target)
        replies = await pipe.execute(raise_on_error=False)
        if not self.replicas:
            return list(replies)
        return [
            self._replicated(result, acknowledged)
            for result, acknowledged in zip(replies[::2], replies[1::2], strict=True)
        ]

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
