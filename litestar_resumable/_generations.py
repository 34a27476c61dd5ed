"""The generations this process runs: their registry, admission limits, key claims and shutdown.

Starting one: the store creates the stream and, for a keyed route, claims the key in the same atomic
step (see ``StreamStore.create``); then a :class:`Producer` is registered and started. Its exit removes it.

Admission goes through :mod:`_limits`, which counts slots, not streams: a keyed generation's slot is
its key, so a new answer in a chat takes the slot of the one it replaces and is never refused for it; an
unkeyed generation has a slot of its own. A slot is held from before the stream is created until the
producer exits, and given back if the start fails.

Shutdown is bounded: no new generations; producers get ``shutdown_grace`` seconds to finish, are then
stopped with the ending ``interrupted``, and every stream this process still produces ends so.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from litestar.exceptions import ServiceUnavailableException

from litestar_resumable._errors import StreamExistsError
from litestar_resumable._ids import new_stream_id
from litestar_resumable._observe import NO_OBSERVER, Observer, timed
from litestar_resumable._producer import Ending, Producer

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from litestar_resumable._events import StreamInfo
    from litestar_resumable._limits import Hold, Limits
    from litestar_resumable._options import StreamOptions
    from litestar_resumable._store.base import StreamStore

__all__ = ("Generations",)

logger = logging.getLogger("litestar_resumable")

_STOP_TIMEOUT = 5.0


class Generations:
    """The producers of this process and the rules for starting and stopping them."""

    def __init__(
        self, store: StreamStore, *, limits: Limits, shutdown_grace: float, observer: Observer = NO_OBSERVER
    ) -> None:
        if shutdown_grace < 0:
            raise ValueError(f"shutdown_grace must be >= 0 seconds, got {shutdown_grace!r}")
        self.store = store
        self.limits = limits
        self.shutdown_grace = shutdown_grace
        self.producers: dict[str, Producer] = {}
        self.closing = False
        self.observer = observer

    async def start(
        self,
        *,
        route: str,
        options: StreamOptions,
        generator: Callable[[], AsyncGenerator[Any, None]],
        key: str | None,
        owner: str | None,
        release: Callable[[Ending], Awaitable[Ending]] | None = None,
    ) -> str:
        """Create the stream (claiming ``key``), start its producer, return the stream id.

        Raises 503 while shutting down, 429 past a limit (:mod:`_limits`), :class:`KeyConflictError` for a
        running key with ``on_conflict="reject"``, :class:`StoreUnavailableError` when the store is out of
        reach.
        """
        if self.closing:
            raise ServiceUnavailableException("the server is shutting down; try again shortly")
        stream_id = new_stream_id(key)
        hold = await self.limits.admit_generation(owner, key if key is not None else stream_id)
        try:
            try:
                replaced = await timed(
                    self.observer,
                    "create",
                    self.store.create(
                        stream_id,
                        route=route,
                        key=key,
                        owner=owner,
                        format=options.format.name,
                        lease=options.lease,
                        ttl=options.ttl,
                        on_conflict=options.on_conflict,
                    ),
                )
            except StreamExistsError:
                # Ids are 128 random bits: this is our own create, run by the store and retried by its
                # client after a lost reply (redis-py retries commands when so set up).
                logger.info("stream %s was created by an earlier attempt of the same call", stream_id)
                replaced = None
            producer = Producer(
                self.store,
                stream_id,
                generator(),
                options,
                route=route,
                owner=owner,
                key=key,
                observer=self.observer,
                release=release,
                on_exit=lambda producer: self._exited(producer, hold),
            )
        except BaseException:
            hold.release()
            raise
        self.producers[stream_id] = producer
        producer.start()
        if replaced is not None and replaced in self.producers:
            self.producers[replaced].stop(Ending("cancelled"))  # its store record says so already
        return stream_id

    def _exited(self, producer: Producer, hold: Hold) -> None:
        self.producers.pop(producer.stream_id, None)
        hold.release()

    async def cancel(self, stream_id: str, owner: str | None) -> StreamInfo | None:
        """End a running generation as ``cancelled`` (on any worker); None if unknown or not ``owner``'s."""
        info = await self.store.info(stream_id)
        if info is None or info.owner != owner:
            return None
        if info.is_running:
            self.observer.cancelled(stream_id, info.route)
            info = await timed(self.observer, "finish", self.store.finish(stream_id, "cancelled"))
        producer = self.producers.get(stream_id)
        if producer is not None:
            producer.stop(Ending("cancelled"))
        return info

    async def shutdown(self) -> None:
        """Stop taking generations; give producers ``shutdown_grace`` seconds, then end them interrupted."""
        self.closing = True
        producers = list(self.producers.values())
        if not producers:
            return
        _, late = await asyncio.wait([p.task for p in producers], timeout=self.shutdown_grace)
        for producer in producers:
            if producer.task in late:
                producer.stop(Ending("interrupted"))
        if late:
            _, stuck = await asyncio.wait(late, timeout=_STOP_TIMEOUT)
            for task in stuck:  # a release that hangs (a database that does not answer, say)
                task.cancel()
        for producer in producers:
            try:
                await self.store.finish(producer.stream_id, "interrupted")
            except Exception:
                logger.warning("could not end stream %s at shutdown", producer.stream_id, exc_info=True)

    def reopen(self) -> None:
        """Take generations again (an app started again in the same process, as tests do)."""
        self.closing = False
