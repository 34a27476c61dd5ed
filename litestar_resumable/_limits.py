"""Admission limits: ``max_generations``, ``max_generations_per_owner`` and ``max_followers``.

Both kinds count *members* of *counters* and hand out a :class:`Hold` per admitted member, given back
when the generation (or follower) ends. A generation's member is its slot: its key (owner and key) if it
has one, so that a new answer in a chat takes the slot of the one it replaces, else its stream id. A
follower's member is the follower itself, counted per stream.

- :class:`WorkerLimits` (the default) count in this process: no store call, and no ``await`` between a
  check and its count, so concurrent requests cannot all pass a check only one of them should.
- :class:`SharedLimits` (``ResumablePlugin(shared_limits=True)``) count in the store, across every worker
  that shares it: one atomic store call checks and counts (a Redis sorted set per counter, a script).
  A member expires ``ttl`` seconds after its last renewal; each worker renews what it holds every
  ``ttl / 3`` seconds in one call per counter, so a worker that dies leaves nothing counted for longer
  than ``ttl``. The cost: a store round trip when a generation or follower starts (the counters of one
  start go in one pipeline), one when it ends, and the renewals.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections import Counter
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, TypeVar

from litestar.exceptions import TooManyRequestsException

if TYPE_CHECKING:
    from litestar_resumable._store.base import StreamStore

__all__ = ("Hold", "Limits", "SharedLimits", "WorkerLimits")

logger = logging.getLogger("litestar_resumable")

SHARED_TTL = 30.0
_K = TypeVar("_K", bound=Hashable)


class Hold:
    """One admitted member; :meth:`release` gives it back (once, whatever the number of calls)."""

    __slots__ = ("_release",)

    def __init__(self, release: Callable[[], None]) -> None:
        self._release: Callable[[], None] | None = release

    def release(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()


class Limits:
    """Admits generations and followers, or refuses them with 429."""

    def __init__(self, *, max_generations: int | None, max_generations_per_owner: int | None) -> None:
        for name, limit in (
            ("max_generations", max_generations),
            ("max_generations_per_owner", max_generations_per_owner),
        ):
            if limit is not None and limit < 1:
                raise ValueError(f"{name} must be at least 1 (or None for no limit), got {limit!r}")
        self.max_generations = max_generations
        self.max_generations_per_owner = max_generations_per_owner

    async def admit_generation(self, owner: str | None, slot: str) -> Hold:
        raise NotImplementedError

    async def admit_follower(self, stream_id: str, limit: int) -> Hold:
        raise NotImplementedError

    async def close(self) -> None:
        """Stop renewing (shared limits); what is held expires or is given back by its holders."""

    def _too_many_generations(self) -> TooManyRequestsException:
        return TooManyRequestsException(
            f"max_generations ({self.max_generations}) generations are running; try again later"
        )

    def _too_many_for(self) -> TooManyRequestsException:
        return TooManyRequestsException(
            f"you run max_generations_per_owner ({self.max_generations_per_owner}) generations; "
            "wait for one to end or cancel one"
        )

    @staticmethod
    def _too_many_followers(stream_id: str, limit: int) -> TooManyRequestsException:
        return TooManyRequestsException(
            f"stream {stream_id} has max_followers ({limit}) readers; try again later"
        )


class WorkerLimits(Limits):
    """Counts in this process."""

    def __init__(self, *, max_generations: int | None, max_generations_per_owner: int | None) -> None:
        super().__init__(max_generations=max_generations, max_generations_per_owner=max_generations_per_owner)
        self._slots: Counter[tuple[str | None, str]] = Counter()  # (owner, slot) -> holds
        self._followers: Counter[str] = Counter()

    async def admit_generation(self, owner: str | None, slot: str) -> Hold:
        member = (owner, slot)
        if member not in self._slots:
            if self.max_generations is not None and len(self._slots) >= self.max_generations:
                raise self._too_many_generations()
            limit = self.max_generations_per_owner
            if owner is not None and limit is not None and sum(o == owner for o, _ in self._slots) >= limit:
                raise self._too_many_for()
        self._slots[member] += 1
        return Hold(lambda: _give_back(self._slots, member))

    async def admit_follower(self, stream_id: str, limit: int) -> Hold:
        if self._followers[stream_id] >= limit:
            raise self._too_many_followers(stream_id, limit)
        self._followers[stream_id] += 1
        return Hold(lambda: _give_back(self._followers, stream_id))


def _give_back(counts: Counter[_K], member: _K) -> None:
    counts[member] -= 1
    if counts[member] <= 0:
        del counts[member]


class SharedLimits(Limits):
    """Counts in the store, across every worker that shares it."""

    def __init__(
        self,
        store: StreamStore,
        *,
        max_generations: int | None,
        max_generations_per_owner: int | None,
        ttl: float = SHARED_TTL,
    ) -> None:
        super().__init__(max_generations=max_generations, max_generations_per_owner=max_generations_per_owner)
        if ttl <= 0:
            raise ValueError(f"limits_ttl must be a positive number of seconds, got {ttl!r}")
        self.store = store
        self.ttl = ttl
        self._held: dict[str, Counter[str]] = {}  # counter -> member -> holds in this process
        self._token = secrets.token_hex(6)  # this process's followers are members of their own
        self._followers = itertools.count()
        self._renewer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def admit_generation(self, owner: str | None, slot: str) -> Hold:
        member = slot if owner is None else f"{len(owner)}:{owner}:{slot}"
        counters: list[tuple[str, int, Callable[[], TooManyRequestsException]]] = []
        if self.max_generations is not None:
            counters.append(("generations", self.max_generations, self._too_many_generations))
        if owner is not None and self.max_generations_per_owner is not None:
            counters.append(
                (f"owner:{len(owner)}:{owner}", self.max_generations_per_owner, self._too_many_for)
            )
        taken = await asyncio.gather(
            *(self.store.take_slot(counter, member, limit, ttl=self.ttl) for counter, limit, _ in counters)
        )
        if not all(taken):
            for (counter, _, _), took in zip(counters, taken, strict=True):
                if took and not self._holds(counter, member):  # taken for this refused start alone
                    self._give_back(counter, member)
            refuse = next(refuse for (_, _, refuse), took in zip(counters, taken, strict=True) if not took)
            raise refuse()
        names = [counter for counter, _, _ in counters]
        for counter in names:
            self._held.setdefault(counter, Counter())[member] += 1
        self._renew_soon()
        return Hold(lambda: self._release(names, member))

    async def admit_follower(self, stream_id: str, limit: int) -> Hold:
        counter, member = f"followers:{stream_id}", f"{self._token}:{next(self._followers)}"
        if not await self.store.take_slot(counter, member, limit, ttl=self.ttl):
            raise self._too_many_followers(stream_id, limit)
        self._held.setdefault(counter, Counter())[member] += 1
        self._renew_soon()
        return Hold(lambda: self._release([counter], member))

    def _holds(self, counter: str, member: str) -> bool:
        return self._held.get(counter, Counter())[member] > 0

    def _release(self, counters: list[str], member: str) -> None:
        for counter in counters:
            counts = self._held[counter]
            counts[member] -= 1
            if counts[member] > 0:
                continue  # another generation here holds the same slot (the chat's next answer)
            del counts[member]
            if not counts:
                del self._held[counter]
            self._give_back(counter, member)

    def _give_back(self, counter: str, member: str) -> None:
        task = asyncio.ensure_future(self._drop(counter, member))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drop(self, counter: str, member: str) -> None:
        try:
            await self.store.drop_slot(counter, member)
        except Exception:
            logger.warning("could not give back %s in %s; it expires", member, counter, exc_info=True)

    def _renew_soon(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name="litestar-resumable limits")

    async def _renew(self) -> None:
        while self._held:
            await asyncio.sleep(self.ttl / 3)
            for counter, members in list(self._held.items()):
                try:
                    await self.store.renew_slots(counter, list(members), ttl=self.ttl)
                except Exception:
                    logger.warning("could not renew what this worker holds in %s", counter, exc_info=True)

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
        tasks = [*self._tasks, *([self._renewer] if self._renewer is not None else [])]
        if tasks:
            await asyncio.wait(tasks, timeout=5)
