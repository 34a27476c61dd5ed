"""The embedded store's durable streams: the methods :class:`MemoryStreamStore` (``memory``) inherits.

A durable stream (``litestar_resumable.durable_streams``) is a :class:`Stream` with a record of its protocol
state (:class:`Durable`, both in ``_memory_records``) and a name in a table of names; it is never dropped to
make room, only when it expires or is deleted.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

from litestar_resumable._errors import StoreUnavailableError, StreamExistsError
from litestar_resumable._events import OPENED_ROUTE, StreamEvent
from litestar_resumable._store._memory_records import EVENT_OVERHEAD, Durable, Stream
from litestar_resumable._store.base import StreamStore, take_within
from litestar_resumable._store.durable_types import (
    DURABLE_FORMAT,
    DurableAppend,
    DurableStream,
    Fork,
    Producer,
    media_type,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ("MemoryDurableStreams",)


class MemoryDurableStreams(StreamStore):
    """The durable-stream methods of :class:`~litestar_resumable.MemoryStreamStore`, which inherits them."""

    if TYPE_CHECKING:  # the store's table of streams, which these methods work on (``memory``)
        _streams: dict[str, Stream]
        _names: dict[str, str]  # durable streams: name -> stream id
        _nbytes: int

        def _get(self, stream_id: str) -> Stream | None: ...
        def _drop(self, stream_id: str) -> None: ...
        def _purge(self, now: float) -> None: ...
        def _reserve(self, nbytes: int) -> None: ...
        def _add(self, stream: Stream, events: Sequence[StreamEvent], extra: int = 0) -> None: ...

    async def durable_id(self, name: str) -> str | None:
        stream_id = self._names.get(name)
        return None if stream_id is None or self._get(stream_id) is None else stream_id

    async def create_durable(
        self,
        stream_id: str,
        *,
        name: str,
        content_type: str,
        data: Sequence[tuple[str | None, str]] = (),
        close: bool = False,
        owner: str | None = None,
        ttl: int | None = None,
        expires_at: float | None = None,
        fork: Fork | None = None,
    ) -> tuple[bool, DurableStream]:
        now = time.monotonic()
        self._purge(now)
        existing = await self.durable_id(name)
        if existing is not None:
            stream = self._streams[existing]
            return False, self._durable_of(existing, stream)
        if stream_id in self._streams:
            raise StreamExistsError(stream_id)
        inherited: list[StreamEvent] = []
        if fork is not None:
            source = self._get(fork.source_id)
            if source is None or source.durable is None or source.durable.deleted:
                raise ValueError(f"the fork's source {fork.source_id} is gone")
            inherited = [event for event in source.events[: fork.position] if not event.is_terminal]
            if len(inherited) != fork.position:
                raise ValueError(f"the fork's source {fork.source_id} has fewer than {fork.position} events")
        record = Durable(name, content_type, ttl, expires_at)
        if fork is not None:
            record.forked_from, record.fork = fork.source_id, fork.spec
        nbytes = EVENT_OVERHEAD + len(name) + len(content_type)
        self._reserve(nbytes)
        stream = Stream(
            route=OPENED_ROUTE,
            key=None,
            owner=owner,
            format=DURABLE_FORMAT,
            ttl=0.0,
            lease=math.inf,
            lease_until=math.inf,
            expires_at=math.inf,
            nbytes=nbytes,
            durable=record,
        )
        self._nbytes += nbytes
        self._streams[stream_id] = stream
        self._names[name] = stream_id
        self._touch(stream, now)
        first = len(inherited) + 1
        try:
            self._add(stream, [*inherited, *(StreamEvent(first + i, t, e) for i, (e, t) in enumerate(data))])
        except StoreUnavailableError:
            self._drop(stream_id)
            raise
        if fork is not None:
            source_record = self._streams[fork.source_id].durable
            assert source_record is not None  # noqa: S101 - checked above, in the same call
            source_record.forks += 1
        if close:
            self._close(stream)
        return True, self._durable_of(stream_id, stream)

    async def append_durable(
        self,
        stream_id: str,
        data: Sequence[tuple[str | None, str]],
        *,
        content_type: str,
        stream_seq: str | None = None,
        producer: Producer | None = None,
        close: bool = False,
    ) -> DurableAppend:
        stream = self._get(stream_id)
        if stream is None or stream.durable is None:
            return DurableAppend("missing")
        record = stream.durable
        if record.deleted:
            return DurableAppend("deleted", stream.last)
        refused = _refusal(
            stream,
            record,
            has_data=bool(data),
            content_type=content_type,
            stream_seq=stream_seq,
            producer=producer,
        )
        if refused is not None:
            return refused
        first = stream.last + 1
        events = [StreamEvent(first + i, text, event) for i, (event, text) in enumerate(data)]
        extra = 0
        if producer is not None and producer.producer_id not in record.producers:
            extra = EVENT_OVERHEAD + len(producer.producer_id)  # the producer's state, kept with the stream
        self._add(stream, events, extra)
        if producer is not None:
            record.producers[producer.producer_id] = (producer.epoch, producer.seq)
        if stream_seq is not None:
            record.stream_seq = stream_seq
        self._touch(stream, time.monotonic())
        if events:
            stream.notify()
        if close:
            record.closed_by = None if producer is None else producer.tuple_text
            self._close(stream)
        return DurableAppend(
            "appended",
            first + len(events) - 1,
            closed=close,
            producer_epoch=None if producer is None else producer.epoch,
            producer_seq=None if producer is None else producer.seq,
        )

    async def read_durable(
        self,
        stream_id: str,
        position: int,
        *,
        limit: int,
        max_bytes: int | None = None,
        touch: bool = True,
    ) -> tuple[DurableStream | None, list[StreamEvent]]:
        self._purge(time.monotonic())
        stream = self._get(stream_id)
        if stream is None or stream.durable is None:
            return None, []
        if touch:
            self._touch(stream, time.monotonic())
        start = max(position, 0)
        return self._durable_of(stream_id, stream), take_within(
            stream.events[start : start + limit], max_bytes
        )

    async def delete_durable(self, stream_id: str) -> bool:
        stream = self._get(stream_id)
        if stream is None or stream.durable is None or stream.durable.deleted:
            return False
        if stream.durable.forks > 0:
            stream.durable.deleted = True
            return True
        while True:  # the stream, then each source it was the last fork of that was deleted meanwhile
            record = stream.durable
            self._drop(stream_id)
            source_id = record.forked_from if record is not None else None
            source = None if source_id is None else self._get(source_id)
            if source_id is None or source is None or source.durable is None:
                return True
            source.durable.forks -= 1
            if source.durable.forks > 0 or not source.durable.deleted:
                return True
            stream_id, stream = source_id, source

    @staticmethod
    def _touch(stream: Stream, now: float) -> None:
        """Set a durable stream's expiry after a read or write: its TTL from now, or its fixed time."""
        record = stream.durable
        assert record is not None  # noqa: S101 - only durable streams are touched
        if record.ttl is not None:
            stream.expires_at = now + record.ttl
        elif record.expires_at is not None:
            stream.expires_at = now + (record.expires_at - time.time())

    def _close(self, stream: Stream) -> None:
        """Close a durable stream: its terminal event (``done``), kept as long as the stream."""
        terminal = StreamEvent.terminal(stream.last + 1, "done")
        stream.events.append(terminal)
        stream.nbytes += terminal.nbytes + EVENT_OVERHEAD
        self._nbytes += terminal.nbytes + EVENT_OVERHEAD
        stream.status = "done"
        stream.ended.set()
        stream.notify()

    @staticmethod
    def _durable_of(stream_id: str, stream: Stream) -> DurableStream:
        record = stream.durable
        assert record is not None  # noqa: S101 - only durable streams are asked for
        return DurableStream(
            stream_id,
            record.name,
            record.content_type,
            stream.status,
            stream.last,
            stream.owner,
            record.ttl,
            record.expires_at,
            record.closed_by,
            record.fork,
            record.deleted,
        )


def _refusal(
    stream: Stream,
    record: Durable,
    *,
    has_data: bool,
    content_type: str,
    stream_seq: str | None,
    producer: Producer | None,
) -> DurableAppend | None:
    """Why an append to a durable stream is refused (or is a retry), in the contract's order; None if not."""
    if stream.status != "running":
        tail = stream.last - 1
        if not has_data or (producer is not None and producer.tuple_text == record.closed_by):
            return DurableAppend(
                "duplicate", tail, closed=True, producer_seq=None if producer is None else producer.seq
            )
        return DurableAppend("closed", tail, closed=True)
    if has_data and media_type(content_type) != media_type(record.content_type):
        return DurableAppend("content_type", stream.last)
    if producer is not None:
        refused = _producer_refusal(record.producers.get(producer.producer_id), producer, stream.last)
        if refused is not None:
            return refused
    if (
        stream_seq is not None
        and record.stream_seq is not None
        and stream_seq.encode() <= record.stream_seq.encode()
    ):
        return DurableAppend("stream_seq", stream.last)
    return None


def _producer_refusal(state: tuple[int, int] | None, producer: Producer, tail: int) -> DurableAppend | None:
    """A producer's append against its state ``(epoch, last seq)``: why it is refused, or None."""
    expected = 0  # a new producer starts at 0, in any epoch
    if state is not None:
        epoch, last = state
        if producer.epoch < epoch:
            return DurableAppend("stale_epoch", tail, producer_epoch=epoch)
        if producer.epoch == epoch and producer.seq <= last:
            return DurableAppend("duplicate", tail, producer_epoch=epoch, producer_seq=last)
        if producer.epoch > epoch and producer.seq != 0:
            return DurableAppend("epoch_restart", tail)
        expected = 0 if producer.epoch > epoch else last + 1
    if producer.seq != expected:
        return DurableAppend("seq_gap", tail, producer_seq=expected)
    return None
