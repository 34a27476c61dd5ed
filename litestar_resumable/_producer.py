"""Producers: a handler's generator run to its end in a task the plugin owns, written through a writer.

The request that starts a generation only creates the stream and follows it like any other reader, so a
client that goes away stops its own reading and nothing else.

A producer is constructed, then started. Whoever wants it to stop (a cancel, the plugin's shutdown,
``max_duration``, its writer finding the stream ended elsewhere or the store gone) calls :meth:`stop` with
the ending it wants; the first one is kept, and it is the stream's ending whatever the handler does with
the cancellation (a handler that catches it and returns does not make the stream ``done``). Otherwise
the ending is the generator's own: ``done``, or ``error`` if it raised or passed a limit.

The end, in order: events still pending are stored (with the format's closing events if the generator
ended by itself); the request's resources the generation took over (dependencies with ``yield``) are
released, so that what they commit is committed before anyone hears ``done``; then the terminal event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from litestar_resumable._errors import StoreUnavailableError, StreamClosedError, StreamLimitError
from litestar_resumable._observe import NO_OBSERVER, Observer
from litestar_resumable._writer import StreamWriter
from litestar_resumable._writer_base import Closed, ending_of

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Awaitable, Callable

    from litestar_resumable._events import TerminalStatus
    from litestar_resumable._options import StreamOptions
    from litestar_resumable._store.base import StreamStore

__all__ = ("Ending", "Producer")

logger = logging.getLogger("litestar_resumable")


@dataclass(frozen=True)
class Ending:
    """How a generation ends: a terminal status (None: someone else ended the stream) and a message."""

    status: TerminalStatus | None
    message: str | None = None
    exception: BaseException | None = None
    """The handler's exception, for the release of what the generation took over."""


ENDED_ELSEWHERE = Ending(None)


class Producer:
    """Runs one generation: the handler's async generator, teed into the store."""

    def __init__(
        self,
        store: StreamStore,
        stream_id: str,
        generator: AsyncGenerator[Any, None],
        options: StreamOptions,
        *,
        route: str,
        owner: str | None = None,
        key: str | None = None,
        observer: Observer = NO_OBSERVER,
        release: Callable[[Ending], Awaitable[Ending]] | None = None,
        on_exit: Callable[[Producer], None] | None = None,
    ) -> None:
        self.store = store
        self.stream_id = stream_id
        self.options = options
        self.owner = owner
        self.ending: Ending | None = None
        """How it ended, once it has."""
        self.started_at = 0.0
        self.writer = StreamWriter(
            store,
            stream_id,
            options=options,
            observer=observer,
            route=route,
            owner=owner,
            key=key,
            on_closed=self._writer_closed,
            claimed=True,
        )
        self._generator = generator
        self._release = release
        self._on_exit = on_exit
        self._stop: Ending | None = None
        self._generating = False
        self._task: asyncio.Task[None] | None = None
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def task(self) -> asyncio.Task[None]:
        if self._task is None:
            raise RuntimeError("the producer is not started")
        return self._task

    def start(self) -> None:
        self.started_at = time.monotonic()
        self.writer.start()
        self._task = asyncio.create_task(self._run(), name=f"litestar-resumable producer {self.stream_id}")
        limit = self.options.max_duration
        if limit is not None:
            ending = Ending("error", f"the generation passed max_duration ({limit:g} s)")
            self._deadline = asyncio.get_running_loop().call_later(limit, self.stop, ending)

    def stop(self, ending: Ending) -> None:
        """Stop the generator; the stream ends as ``ending`` says unless something stopped it first.

        Only the generator is cancelled: once it has ended, what follows (storing the last events,
        releasing resources, the terminal event) runs to its end.
        """
        if self._stop is None:
            self._stop = ending
        if self._generating and self._task is not None:
            self._task.cancel()

    def _writer_closed(self, why: Closed) -> None:
        self.stop(Ending(*ending_of(why)))

    async def _run(self) -> None:
        deactivate = self.writer.activate()  # the generation's span is current in this task
        try:
            self._generating = True
            try:
                natural = await self._generate()
            finally:
                self._generating = False
            await self.writer.drain(closing=self._stop is None and natural.status in ("done", "error"))
            # A writer that could not store everything has stopped the producer (the store failed, lost
            # events, or someone ended the stream): that ending wins over the generator's own.
            ending = self._stop or natural
            if self._release is not None:
                ending = await self._release(ending)
            await self.writer.finish(ending.status, ending.message)
            self.ending = ending
        finally:
            if self._deadline is not None:
                self._deadline.cancel()
            await self.writer.stop()
            deactivate()
            if self._on_exit is not None:
                self._on_exit(self)

    async def _generate(self) -> Ending:
        """Run the generator to its end, storing its items; say how it ended."""
        natural: Ending
        try:
            try:
                async for item in self._generator:
                    if self._stop is not None:  # a handler that ignored its cancellation yields no more
                        break
                    await self.writer.write(item)
            finally:
                with contextlib.suppress(Exception):
                    await self._generator.aclose()
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            natural = Ending("interrupted")  # our stop (whose ending wins) or the event loop closing
        except StreamClosedError:
            natural = ENDED_ELSEWHERE
        except StreamLimitError as exc:
            logger.warning("resumable stream %s: %s", self.stream_id, exc)
            self.writer.record_error(exc)
            natural = Ending("error", str(exc), exc)
        except StoreUnavailableError as exc:
            self.writer.record_error(exc)
            natural = Ending("error", None, exc)
        except Exception as exc:
            logger.exception("resumable stream %s failed", self.stream_id)
            self.writer.record_error(exc)
            message = (str(exc) or type(exc).__name__) if self.options.expose_errors else None
            natural = Ending("error", message, exc)
        else:
            natural = Ending("done")
        return natural
