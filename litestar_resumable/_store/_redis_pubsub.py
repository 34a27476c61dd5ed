"""Hearing about new events: one Pub/Sub subscriber per process, classic or sharded.

A standalone Redis uses classic Pub/Sub: one connection for every channel this process watches, one
reader task. A Redis Cluster uses sharded Pub/Sub (``SSUBSCRIBE``/``SPUBLISH``, Redis 7+), so a stream's
notifications reach only the shard that holds it, not every node: one connection and one reader task per
shard that holds a watched stream. A shard's connection is opened on its first subscription and closed
with its last.

When a shard stops answering (a failover, say) or a channel's slot moves (the server then sends an
unasked ``sunsubscribe``), the subscriber refreshes the cluster's map of slots and subscribes the channels
again on their new owners; the streams of those channels are reported lost, so their watches re-read
them (a notification may have been missed meanwhile). Readers' own timed re-checks make good anything
still missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from redis.asyncio.client import PubSub
    from redis.asyncio.cluster import ClusterNode, RedisCluster

__all__ = ("ClassicSubscriber", "Listener", "ShardedSubscriber", "Subscriber")

logger = logging.getLogger("litestar_resumable")

_REDIS_PARAMETERS = frozenset(inspect.signature(Redis.__init__).parameters) - {"self", "connection_pool"}
_CLOSE_TIMEOUT = 2.0
_FIRST_BACKOFF = 0.05
_MAX_BACKOFF = 2.0

Listener = Callable[[str, str, Any], None]
"""Called with (kind, channel, data): kind is 'subscribed', 'message' or 'lost' (data None)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _read(pubsub: PubSub, channels: set[str], listener: Listener, *, sharded: bool) -> None:
    """Read one connection's messages until it fails; raise what made it fail."""
    subscribed, message_kind = ("ssubscribe", "smessage") if sharded else ("subscribe", "message")
    while True:
        # Blocking, with no timeout per message: a timed read costs a timer per message, at thousands of
        # messages a second. A dead connection raises; closing the subscriber cancels the reader.
        message = await pubsub.get_message(timeout=None)
        if message is None:
            continue
        kind, channel = message["type"], _text(message["channel"])
        if kind == subscribed:
            listener("subscribed", channel, None)
        elif kind == message_kind:
            listener("message", channel, message["data"])
        elif kind == "sunsubscribe" and channel in channels:
            raise _Moved(channel)  # not ours: the channel's slot has moved to another shard


class _Moved(Exception):  # noqa: N818 - an event, not an error
    """The server dropped a subscription whose slot moved."""

    def __init__(self, channel: str) -> None:
        super().__init__(channel)
        self.channel = channel


class Subscriber:
    """Subscribes this process to stream channels and reports what it hears to ``listener``."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.closing = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def subscribe(self, channel: str) -> None:
        raise NotImplementedError

    async def unsubscribe(self, channel: str) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        self.closing = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=_CLOSE_TIMEOUT)

    def _start(self, coroutine: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


class ClassicSubscriber(Subscriber):
    """Classic Pub/Sub on a standalone Redis: one connection, one reader, for every channel."""

    def __init__(self, redis: Redis, listener: Listener) -> None:
        super().__init__(listener)
        self._redis = redis
        self._pubsub: PubSub | None = None
        self._channels: set[str] = set()
        self._reader: asyncio.Task[None] | None = None
        # redis-py's PubSub opens its connection on its first command: two first commands at once would
        # open two, and the replies on the one it forgets would never be read.
        self._connecting = asyncio.Lock()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        if self._pubsub is None or self._pubsub.connection is None:
            async with self._connecting:
                if self._pubsub is None:
                    self._pubsub = self._redis.pubsub()
                if self._pubsub.connection is None:
                    await self._pubsub.subscribe(channel)
                    self._reader = self._start(self._read_forever(self._pubsub))
                    return
        await self._pubsub.subscribe(channel)
        if self._reader is None or self._reader.done():
            self._reader = self._start(self._read_forever(self._pubsub))

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.unsubscribe(channel)

    async def _read_forever(self, pubsub: PubSub) -> None:
        backoff = _FIRST_BACKOFF
        while not self.closing:
            try:
                await _read(pubsub, self._channels, self.listener, sharded=False)
            except (RedisError, OSError):
                # redis-py reconnects and subscribes again by itself; what was published meanwhile is lost.
                logger.warning("lost the Pub/Sub connection; re-reading every watched stream", exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                for channel in list(self._channels):
                    self.listener("lost", channel, None)

    async def close(self) -> None:
        await super().close()
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            self._pubsub = None


class _Shard:
    """One shard's subscription connection and the channels this process watches on it."""

    def __init__(self, node: ClusterNode) -> None:
        self.name = node.name
        # The node's own connection settings (auth, TLS, timeouts), less the cluster client's extras.
        settings = {k: v for k, v in node.connection_kwargs.items() if k in _REDIS_PARAMETERS}
        self.client = Redis(**{**settings, "host": node.host, "port": node.port})
        self.pubsub = self.client.pubsub()
        self.channels: set[str] = set()
        self.reader: asyncio.Task[None] | None = None

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(RedisError, OSError):
            await self.client.aclose()


class ShardedSubscriber(Subscriber):
    """Sharded Pub/Sub on a Redis Cluster: one connection and one reader per shard with watched streams."""

    def __init__(self, cluster: RedisCluster, listener: Listener) -> None:
        super().__init__(listener)
        self._cluster = cluster
        self._shards: dict[str, _Shard] = {}
        self._owner: dict[str, _Shard] = {}  # channel -> the shard it is subscribed on
        self._lock = asyncio.Lock()

    async def subscribe(self, channel: str) -> None:
        async with self._lock:
            await self._subscribe(channel)

    async def _subscribe(self, channel: str) -> None:
        await self._cluster.initialize()
        node = self._cluster.get_node_from_key(channel)
        if node is None:
            raise RedisError(f"no shard holds {channel}")
        shard = self._shards.get(node.name)
        if shard is None:
            shard = self._shards[node.name] = _Shard(node)
        shard.channels.add(channel)
        self._owner[channel] = shard
        await shard.pubsub.ssubscribe(channel)
        if shard.reader is None or shard.reader.done():
            shard.reader = self._start(self._read_shard(shard))

    async def unsubscribe(self, channel: str) -> None:
        async with self._lock:
            shard = self._owner.pop(channel, None)
            if shard is None:
                return
            shard.channels.discard(channel)
            if shard.channels:
                with contextlib.suppress(RedisError, OSError):
                    await shard.pubsub.sunsubscribe(channel)
            else:
                self._drop(shard)

    def _drop(self, shard: _Shard) -> None:
        if self._shards.get(shard.name) is shard:
            del self._shards[shard.name]
        if shard.reader is not None and shard.reader is not asyncio.current_task():
            shard.reader.cancel()
        self._start(shard.close())

    async def _read_shard(self, shard: _Shard) -> None:
        backoff = _FIRST_BACKOFF
        while not self.closing and self._shards.get(shard.name) is shard:
            try:
                await _read(shard.pubsub, shard.channels, self.listener, sharded=True)
            except _Moved as moved:
                logger.info("the slot of %s moved; subscribing on its new shard", moved.channel)
                await self._move({moved.channel}, shard)
            except (RedisError, OSError):
                logger.warning("lost shard %s; subscribing its channels on their owners again", shard.name)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                await self._move(set(shard.channels), shard)
                return

    async def _move(self, channels: set[str], old: _Shard) -> None:
        """Subscribe ``channels`` (of shard ``old``) again wherever the cluster now keeps them."""
        async with self._lock:
            with contextlib.suppress(RedisError, OSError):
                await self._cluster.nodes_manager.initialize()  # the map of slots after the change
            old.channels.difference_update(channels)
            if not old.channels:
                self._drop(old)
            for channel in channels:
                if self._owner.get(channel) is not old:
                    continue  # unsubscribed meanwhile
                del self._owner[channel]
                try:
                    await self._subscribe(channel)
                except (RedisError, OSError):
                    logger.warning(
                        "could not subscribe to %s again; its readers poll", channel, exc_info=True
                    )
                self.listener("lost", channel, None)

    async def close(self) -> None:
        await super().close()
        shards, self._shards = list(self._shards.values()), {}
        self._owner.clear()
        for shard in shards:
            await shard.close()
