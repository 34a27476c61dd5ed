"""What every writer of a stream keeps and decides alike: :class:`WriterBase`, and why a writer stopped.

The async :class:`StreamWriter` (``_writer``) and the ``SyncStreamWriter`` (``_sync_writer``) differ only in
how they wait and call the store. Both keep here the stream's options (its lease and format, once claimed),
the counts of what they stored, the observer's report of the generation, and the rules for the ending
a stream gets when its writer's block is left or the writer stopped early (:data:`Closed`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING, Any, Literal

from litestar_resumable._batch import Pending
from litestar_resumable._errors import StoreUnavailableError, StreamClosedError, StreamLimitError
from litestar_resumable._events import OPENED_ROUTE
from litestar_resumable._format import format_named
from litestar_resumable._generation_end import GenerationEnd
from litestar_resumable._options import StreamOptions

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar_resumable._events import StreamEvent, StreamInfo, TerminalStatus
    from litestar_resumable._format import StreamFormat
    from litestar_resumable._observe import Generation, Observer

__all__ = ("Closed", "WriterBase", "ending_of")

Closed = Literal["ended elsewhere", "store failed", "store lost events"]
"""Why a writer stopped before it was closed: the stream was ended by someone else, the store failed, or
the store no longer has events it took (a Redis failover with asynchronous replication, say)."""


def ending_of(why: Closed) -> tuple[TerminalStatus | None, str | None]:
    """The ending a stream gets when its writer stopped for ``why`` (None: someone else ended it)."""
    if why == "ended elsewhere":
        return None, None
    if why == "store lost events":
        return "interrupted", "the store lost events it had taken (a failover?)"
    return "error", None


def _nothing() -> None:
    pass


class WriterBase:
    """What every writer of a stream keeps and decides alike: the async :class:`StreamWriter` and the
    ``SyncStreamWriter`` differ only in how they wait and call the store."""

    def __init__(
        self,
        stream_id: str,
        format: StreamFormat | None,  # noqa: A002 - the option's name
        options: StreamOptions | None,
        observer: Observer,
        *,
        route: str,
        owner: str | None,
        key: str | None,
    ) -> None:
        self.stream_id = stream_id
        self.options = options or StreamOptions()
        if format is not None:
            self.options = dataclasses.replace(self.options, format=format)
        self.route = route
        """The stream's route (``-`` for streams opened with ``open_stream``), as the metrics label it."""
        self.owner = owner
        self.key = key
        self.events = 0
        """Events stored so far (the terminal one not counted)."""
        self.bytes = 0
        """UTF-8 bytes of the data of the events stored so far."""
        self.closed: Closed | None = None
        """Why the writer stopped early (None while it has not)."""
        self._format_given = format is not None
        self._pending = Pending(self.options.format.encoder(stream_id), self.options)
        self._observer = observer
        self._generation: Generation | None = None
        self._deactivate: Callable[[], None] = _nothing

    @property
    def cancelled(self) -> bool:
        """True once the stream was ended by someone else (cancelled on any worker, or given up)."""
        return self.closed == "ended elsewhere"

    def _claimed(self, taken: bool, info: StreamInfo | None) -> None:  # noqa: FBT001 - the claim's answer
        """Write as the claimed stream says: its lease, and its format unless one was given."""
        if not taken or info is None:
            if info is None:
                why = "it is unknown or has expired"
            elif info.is_running:
                why = "another writer has claimed it, or no writer did within its lease"
            else:
                why = f"it has ended ({info.status})"
            raise StreamClosedError(f"stream {self.stream_id} cannot be written: {why}")
        self.route, self.owner, self.key = info.route or OPENED_ROUTE, info.owner, info.key
        changes: dict[str, Any] = {"lease": info.lease} if info.lease > 0 else {}
        if not self._format_given:
            known = format_named(info.format)
            if known is None:
                raise StreamClosedError(
                    f"stream {self.stream_id} is in format {info.format!r}, "
                    "which this process does not know: pass format= to the writer"
                )
            changes["format"] = known
        self.options = dataclasses.replace(self.options, **changes)
        self._pending = Pending(self.options.format.encoder(self.stream_id), self.options)

    def _begin(self) -> None:
        self._generation = self._observer.generation(self.stream_id, self.route)

    def _stored(self, batch: list[StreamEvent]) -> None:
        nbytes = sum(event.nbytes for event in batch)
        self.events += len(batch)
        self.bytes += nbytes
        if self._generation is not None:
            self._generation.stored(len(batch), nbytes)

    def activate(self) -> Callable[[], None]:
        """Make the generation's span current in the calling task (a writer's block does it); returns the
        undo."""
        if self._generation is None:
            return _nothing
        return self._generation.activate()

    def record_error(self, error: BaseException) -> None:
        """The generation failed with ``error``: recorded on its span (logging it is the caller's)."""
        if self._generation is not None:
            self._generation.failed(error)

    def _ended(
        self, status: TerminalStatus | None, message: str | None, info: StreamInfo | None
    ) -> GenerationEnd | None:
        """Report the end (metrics, span, log); the :class:`GenerationEnd` for the hook (None: not begun).

        ``status`` is what this writer wrote (None: nothing, the stream ended elsewhere); ``info`` the
        stream as the store has it afterwards (None: out of reach)."""
        generation = self._generation
        if generation is None:
            return None
        final = info.status if info is not None and not info.is_running else (status or "interrupted")
        end = GenerationEnd(
            stream_id=self.stream_id,
            route=self.route,
            status=final,  # type: ignore[arg-type] # not running: a terminal status
            message=message if final == status else None,
            events=self.events,
            bytes=self.bytes,
            duration=time.monotonic() - generation.started_at,
            owner=self.owner,
            key=self.key,
            info=info,
        )
        generation.ended(end, ended_elsewhere=self.closed == "ended elsewhere")
        return end

    def _abandoned(self) -> None:
        if self._generation is not None:
            self._generation.abandoned()

    def _raise_if_closed(self) -> None:
        if self.closed == "ended elsewhere":
            raise StreamClosedError(f"stream {self.stream_id} has ended")
        if self.closed is not None:
            raise StoreUnavailableError(f"the store did not keep the events of stream {self.stream_id}")

    def _exit_ending(
        self, error: BaseException | None
    ) -> tuple[BaseException | None, TerminalStatus, str | None]:
        """The error to raise on, and the ending of a stream whose block was left with ``error``: done,
        error (its text only with ``expose_errors``, or for a limit), or interrupted (the worker itself was
        stopped: a cancelled task, ``SystemExit``, ``KeyboardInterrupt``)."""
        if isinstance(error, StreamClosedError) and self.cancelled:
            return None, "done", None  # cancelled: that is its ending (kept), and nobody's failure
        if error is None:
            return None, "done", None
        if not isinstance(error, Exception):
            return error, "interrupted", None
        if isinstance(error, StreamLimitError) or self.options.expose_errors:
            return error, "error", str(error) or type(error).__name__
        return error, "error", None

    def _final_ending(self, status: TerminalStatus, message: str | None) -> tuple[TerminalStatus, str | None]:
        """The ending to write: a writer that stopped early overrides the one its block chose."""
        if self.closed is None:
            return status, message
        closed_status, closed_message = ending_of(self.closed)
        return closed_status or status, closed_message or message
