"""The Redis store's own connections, and a batch of commands written straight to one (a shard's).

A pipeline of ``_redis_calls`` is written straight to a connection the store keeps for itself (per shard on
a cluster), its commands packed by hiredis when it is installed: redis-py's own pipelines cost most of a
command's time in Python (a pool checkout with its timeout, a pipeline object, packing in Python; on a
cluster also the command's parsing and routing), which at thousands of writes a second is most of a core
(benchmarks/). On a cluster the calls go by the shard that serves their slot; those a shard answers with a
redirect (``MOVED``, ``ASK``: slots moved) or that cannot be reached (a failover) are sent again through
redis-py's ``ClusterPipeline``, which follows redirects, refreshes the map of slots and retries.

With ``replicas > 0`` each call is followed in its pipeline by ``WAIT replicas timeout`` on the same
connection (on a cluster, the same shard's connection), and it counts as done only once that many replicas
have it: fewer raises :class:`StoreUnavailableError`, and the caller retries (a retried append whose
events are stored already only renews the lease).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError, ResponseError
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

__all__ = ("Command", "Shards")

_BATCH_TIMEOUT = 10.0  # a pipeline's bound when the client sets no socket_timeout


class Command(Protocol):
    """A call as it is sent: its command, and the key that routes it to its shard on a cluster."""

    command: tuple[Any, ...]
    key: str


class Shards:
    """The store's own connections (by shard on a cluster), and batches of commands sent on them."""

    def __init__(
        self, redis: Redis | RedisCluster, *, cluster: bool, replicas: int, replica_timeout: float
    ) -> None:
        self.redis = redis
        self.replicas = replicas
        self.replica_timeout_ms = max(1, round(replica_timeout * 1000))
        self._idle: dict[str, list[AbstractConnection]] = {}  # the store's own connections by shard, unused
        self._held: list[AbstractConnection] = []
        timeout = None if cluster else redis.connection_pool.connection_kwargs.get("socket_timeout")  # type: ignore[union-attr]
        self._batch_timeout: float = timeout if timeout is not None else _BATCH_TIMEOUT

    async def by_shard(
        self, batch: Sequence[Command]
    ) -> tuple[dict[str, tuple[ClusterNode, list[int]]], list[int]]:
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

    async def through_cluster(self, batch: Sequence[Command]) -> list[Any]:
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

    async def send_direct(self, node: ClusterNode | None, batch: Sequence[Command]) -> list[Any]:
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

    async def close(self) -> None:
        held, self._held, self._idle = self._held, [], {}
        for connection in held:
            with contextlib.suppress(RedisError, OSError):
                await connection.disconnect()
