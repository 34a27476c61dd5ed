"""Waiting for an event with a timeout, on the hot path: once per batch for producers and followers.

``asyncio.wait_for`` wraps the wait in a new task every call, which at hundreds of streams was a tenth of
the process's time (benchmarks/). ``asyncio.timeout`` (3.11+) needs no task; 3.10 keeps ``wait_for``.
"""

from __future__ import annotations

import asyncio
import sys

__all__ = ("wait_event",)

if sys.version_info >= (3, 11):

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

else:  # pragma: no cover - Python 3.10

    async def wait_event(event: asyncio.Event, timeout: float) -> bool:
        """Wait until ``event`` is set; False if ``timeout`` seconds passed first."""
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
