"""The one way this library waits for something with a time limit (``asyncio.timeout``), and retries a
store that is out of reach.

``asyncio.wait_for`` creates a task per call (a tenth of the process's time at hundreds of streams,
benchmarks/), and on Python 3.11 it can swallow a cancellation that arrives as the awaited thing
completes: a producer whose watch was cancelled that way waited forever on its guard (issue: producers
that never exit). ``asyncio.timeout`` has neither problem, so nothing here uses ``wait_for``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from litestar_resumable._errors import StoreUnavailableError

__all__ = ("Signal", "Wakeup", "retrying", "wait_event")

logger = logging.getLogger("litestar_resumable")

_FIRST_RETRY_DELAY = 0.05
_MAX_RETRY_DELAY = 1.0


class Signal:
    """Wakes every waiter each time it is fired; a waiter may give up after a timeout.

    The hot path's wake-up (a stream grew; its readers read): firing resolves the waiters' futures, and a
    wait with a timeout costs one timer handle, where ``asyncio.Event`` plus ``asyncio.timeout`` would
    cost a new event per firing and a timeout context per wait (a tenth of a busy process, benchmarks/).
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[bool]] = []

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    async def wait(self, timeout: float) -> bool:
        """True once fired, False if ``timeout`` seconds passed first."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(timeout, _give_up, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()
            if not waiter.done():  # cancelled while waiting
                waiter.cancel()


class Wakeup:
    """A flag one task waits on and others raise: ``asyncio.Event`` for a single waiter, at a fraction
    of its cost (a writer's flusher waits on it once per batch)."""

    __slots__ = ("_raised", "_waiter")

    def __init__(self) -> None:
        self._raised = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        self._raised = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def clear(self) -> None:
        self._raised = False

    async def wait(self) -> None:
        if self._raised:
            return
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


def _give_up(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait until ``event`` is set; False if ``timeout`` seconds passed first."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def retrying(call: Callable[[], Awaitable[Any]], retry_for: float, what: str) -> Any:
    """``call()``, retried with backoff for ``retry_for`` seconds while the store is out of reach."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_for
    delay = _FIRST_RETRY_DELAY
    while True:
        try:
            return await call()
        except StoreUnavailableError:
            if loop.time() + delay > deadline:
                raise
            logger.warning("%s failed; retrying", what, exc_info=True)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_DELAY)
