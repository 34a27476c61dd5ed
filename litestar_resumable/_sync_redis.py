"""The Redis side of :class:`SyncStreamWriter`: its calls on redis-py's sync client, its guard's listening.

One stream's keys and end channel; the claim, append and finish scripts of ``_store/_redis_layout.py``
(registered once per writer), each call retried for ``store_retry_for`` seconds while Redis is out of reach
and timed for the metrics; and the guard thread's subscription to the stream's ``end`` channel (sharded on
a cluster), subscribed again after a lost connection, which hears a cancel from any worker at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from litestar_resumable._errors import StoreUnavailableError
from litestar_resumable._store._redis_layout import (
    APPEND,
    CLAIM,
    FINISH,
    INFO_FIELDS,
    append_args,
    channel_of,
    finish_args,
    info_of,
    names_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis
    from redis.commands.core import Script

    from litestar_resumable._events import StreamEvent, StreamInfo, TerminalStatus
    from litestar_resumable._observe import Observer, StoreOperation
    from litestar_resumable._store._redis_calls import Script as ScriptText

__all__ = ("UNREACHABLE", "SyncRedis")

logger = logging.getLogger("litestar_resumable")

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
"""What redis-py's sync client raises when Redis is out of reach."""
_GUARD_POLL = 0.25  # seconds between the guard's checks of whether the writer has stopped


class SyncRedis:
    """One stream's calls to Redis from a sync writer, and the guard's listening for the stream's end."""

    def __init__(
        self, redis: redis.Redis | RedisCluster, key_prefix: str, stream_id: str, observer: Observer
    ) -> None:
        self.redis = redis
        self.stream_id = stream_id
        self._observer = observer
        self._cluster = isinstance(redis, RedisCluster)
        self._sharded = "1" if self._cluster else "0"
        self._base, events_key, meta = names_of(key_prefix, stream_id)
        self._keys = [events_key, meta]
        self._meta = meta
        self._channel = channel_of(key_prefix, stream_id, ends_only=True)
        self._scripts: dict[str, Script] = {}

    def claim(self, retry_for: float) -> tuple[bool, StreamInfo | None]:
        """Claim the stream (the claim script); whether taken, and the stream's info."""
        taken = self._retrying(
            lambda: int(self._call(CLAIM, [])), f"claiming stream {self.stream_id}", retry_for
        )
        fields = self._retrying(
            lambda: self.redis.hmget(self._meta, list(INFO_FIELDS)),
            f"reading stream {self.stream_id}",
            retry_for,
        )
        return bool(taken), info_of(self.stream_id, fields)

    def append(self, batch: list[StreamEvent], lease: float, retry_for: float) -> bool:
        """Store ``batch`` and renew the lease; False if the stream is not running."""
        args = append_args(self._base, self.stream_id, self._sharded, batch, lease)
        status = self._retrying(
            lambda: self._call(APPEND, args), f"writing stream {self.stream_id}", retry_for, "append"
        )
        return (status.decode() if isinstance(status, bytes) else status) == "running"

    def finish(self, status: TerminalStatus, message: str | None, retry_for: float) -> StreamInfo | None:
        """End the stream (the finish script); its info afterwards."""
        args = finish_args(
            self._base, self.stream_id, status, message, sharded=self._sharded, if_expired=False
        )
        fields = self._retrying(
            lambda: self._call(FINISH, args), f"ending stream {self.stream_id}", retry_for, "finish"
        )
        return None if fields is None else info_of(self.stream_id, fields)

    def info(self) -> StreamInfo | None:
        """The stream's info, read once."""
        fields = self.redis.hmget(self._meta, list(INFO_FIELDS))
        return None if fields is None else info_of(self.stream_id, fields)

    def watch_for_end(self, stopped: threading.Event, heard_end: Callable[[], None]) -> None:
        """The guard thread: call ``heard_end`` once the stream has ended, unless ``stopped`` is set first."""
        while not stopped.is_set():
            try:
                self._listen(stopped, heard_end)
            except UNREACHABLE:
                logger.warning(
                    "stream %s: lost the subscription to its end; again", self.stream_id, exc_info=True
                )
                stopped.wait(_GUARD_POLL)
            else:
                return

    def _listen(self, stopped: threading.Event, heard_end: Callable[[], None]) -> None:
        pubsub = self.redis.pubsub()  # type: ignore[no-untyped-call]
        try:
            if self._cluster:
                pubsub.ssubscribe(self._channel)
                receive = pubsub.get_sharded_message
            else:
                pubsub.subscribe(self._channel)
                receive = pubsub.get_message
            # Subscribed: an end from now on is heard; one before it is in the stream's status.
            if self.redis.hget(self._meta, "status") not in (b"running", "running"):
                heard_end()
                return
            while not stopped.is_set():
                message = receive(ignore_subscribe_messages=True, timeout=_GUARD_POLL)
                if message is not None and message.get("type") in ("message", "smessage"):
                    heard_end()
                    return
        finally:
            pubsub.close()

    def _call(self, script: ScriptText, args: list[Any]) -> Any:
        registered = self._scripts.get(script.name)
        if registered is None:
            registered = self._scripts[script.name] = self.redis.register_script(script.text)
        return registered(keys=self._keys, args=args)

    def _retrying(
        self, call: Callable[[], Any], what: str, retry_for: float, operation: StoreOperation | None = None
    ) -> Any:
        """``call()``, retried for ``retry_for`` seconds while Redis is out of reach; each try timed for
        the metrics as ``operation``."""
        deadline = time.monotonic() + retry_for
        delay = 0.05
        timing = operation is not None and self._observer.timing
        while True:
            started = time.perf_counter()
            try:
                result = call()
            except UNREACHABLE as exc:
                if timing:
                    self._observer.store_failed(operation, started, exc)  # type: ignore[arg-type]
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailableError(f"Redis is out of reach: {exc}") from exc
                logger.warning("%s failed; retrying", what, exc_info=True)
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
            else:
                if timing:
                    self._observer.store_call(operation, started)  # type: ignore[arg-type]
                return result
