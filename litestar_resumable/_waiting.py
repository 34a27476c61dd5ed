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

__all__ = ("retrying", "wait_event")

logger = logging.getLogger("litestar_resumable")

_FIRST_RETRY_DELAY = 0.05
_MAX_RETRY_DELAY = 1.0


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
