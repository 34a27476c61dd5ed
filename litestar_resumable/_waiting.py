"""The one way this library waits for something with a time limit: ``asyncio.timeout``.

``asyncio.wait_for`` creates a task per call (a tenth of the process's time at hundreds of streams,
benchmarks/), and on Python 3.11 it can swallow a cancellation that arrives as the awaited thing
completes: a producer whose watch was cancelled that way waited forever on its guard (issue: producers
that never exit). ``asyncio.timeout`` has neither problem, so nothing here uses ``wait_for``.
"""

from __future__ import annotations

import asyncio

__all__ = ("wait_event",)


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
