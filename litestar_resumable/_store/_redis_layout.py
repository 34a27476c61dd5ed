"""The Redis store's key layout, its scripts, and what every writer of the layout shares.

Key layout (``P`` is ``key_prefix``; ``T`` is the stream id's 4-character slot tag, a Redis Cluster
hash tag, so a stream's keys share a slot; a keyed stream's tag is its key's, see ``_ids``):

- ``P:{T}:<id>:events``: a Redis Stream; the entry id of the event at position ``n`` is ``0-n``, so
  ``XRANGE (0-n +`` is "everything after position n" with no lookup table;
- ``P:{T}:<id>:meta``: a hash with ``status``, ``last`` (newest position), ``lease`` (Redis server time in ms
  until which the producer is presumed alive), ``ttl`` (ms to keep the stream after it ends), ``route``,
  ``key``, ``owner``, ``format``, ``hold`` (the lease's length, ms) and ``claimed`` (``0`` until a writer
  takes over a stream opened for one);
- ``P:{T}:<id>:notify``: a Pub/Sub channel; every write publishes the new last position, and
  ``P:{T}:<id>:end`` the terminal one (what a process that writes the stream listens to);
- ``P:{T}:key:<key>``: the id of the key's running stream, in the same slot as all of the key's streams;
- ``P:{T}:counter:<name>``: a counter of shared limits (a sorted set of members and their expiry), ``T``
  the name's tag;
- ``P:{T}:name:<name>``: the id of the durable stream of that name (``litestar_resumable.durable_streams``),
  ``T`` the name's tag, which is its streams' tag too. A durable stream's meta hash holds its protocol
  state besides the usual fields (``_redis_durable_lib.lua``); its writes are the ``_redis_durable_*.lua``
  scripts.

The scripts (``_redis_*.lua``, with ``_redis_lib.lua`` prepended) are package data beside this module,
loaded by :func:`script`: the streams' scripts here, the durable streams' in ``_redis_durable``. The store
(``redis``, ``_redis_durable``) and ``SyncStreamWriter`` (on redis-py's sync client) share the names of
keys, the scripts' arguments and the reading of their replies; the store's calls share
:func:`unavailable_on_error`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Coroutine
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from litestar_resumable._errors import StoreUnavailableError
from litestar_resumable._events import StreamEvent, StreamInfo, StreamStatus, TerminalStatus, terminal_data
from litestar_resumable._ids import stream_tag
from litestar_resumable._store._redis_calls import Script

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = (
    "APPEND",
    "CLAIM",
    "CREATE",
    "FINISH",
    "INFO_FIELDS",
    "READ",
    "READ_ALL",
    "SLOTS",
    "append_args",
    "channel_of",
    "events_of",
    "finish_args",
    "info_of",
    "ms",
    "names_of",
    "script",
    "text_of",
    "unavailable_on_error",
)

S = TypeVar("S")
P = ParamSpec("P")
T = TypeVar("T")

INFO_FIELDS = ("status", "last", "route", "key", "owner", "format", "hold")
READ_ALL = 1 << 62  # "no byte limit" for the read script


def script(name: str, *libs: str) -> Script:
    """The script in the file ``name``, with ``_redis_lib.lua`` and ``libs`` before it."""
    package = files("litestar_resumable._store")
    text = "".join(package.joinpath(part).read_text("utf-8") for part in ("_redis_lib.lua", *libs, name))
    sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - the name Redis gives a script
    return Script(name.removeprefix("_redis_").removesuffix(".lua"), text, sha)


CREATE, CLAIM, APPEND, FINISH, READ, SLOTS = (
    script(f"_redis_{name}.lua") for name in ("create", "claim", "append", "finish", "read", "slots")
)


def text_of(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def unavailable_on_error(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Report Redis out of reach as :class:`StoreUnavailableError`, which the plugin answers with 503."""

    @functools.wraps(method)
    async def call(self: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(self, *args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailableError(f"Redis is out of reach: {exc}") from exc

    return call


def events_of(entries: Any) -> list[StreamEvent]:
    """Stream entries (``0-n``, fields) as events: per event of every catch-up read, so kept lean."""
    events: list[StreamEvent] = []
    add = events.append
    for entry_id, fields in entries:
        if isinstance(fields, dict):  # XRANGE's reply, parsed by redis-py
            data, name = fields.get(b"d", fields.get("d", "")), fields.get(b"e", fields.get("e"))
        else:  # a script's reply: the raw field list 'd', data[, 'e', name]
            data, name = fields[1], fields[3] if len(fields) > 3 else None  # noqa: PLR2004
        add(
            StreamEvent(
                int(entry_id[2:]),  # entry ids are "0-<position>", bytes or str
                data.decode() if type(data) is bytes else str(data),
                None if name is None else text_of(name),
            )
        )
    return events


def names_of(key_prefix: str, stream_id: str) -> tuple[str, str, str]:
    """A stream's base (prefix and slot tag), events key and meta key."""
    base = f"{key_prefix}:{{{stream_tag(stream_id)}}}"
    return base, f"{base}:{stream_id}:events", f"{base}:{stream_id}:meta"


def channel_of(key_prefix: str, stream_id: str, *, ends_only: bool = False) -> str:
    return f"{key_prefix}:{{{stream_tag(stream_id)}}}:{stream_id}:{'end' if ends_only else 'notify'}"


def append_args(
    base: str, stream_id: str, sharded: str, events: Sequence[StreamEvent], lease: float
) -> list[Any]:
    """The append script's arguments (see _redis_append.lua)."""
    args: list[Any] = [ms(lease), base, stream_id, sharded, events[0].position if events else 0]
    for event in events:
        args.append(event.event or "")
        args.append(event.data)
    return args


def finish_args(
    base: str, stream_id: str, status: TerminalStatus, message: str | None, *, sharded: str, if_expired: bool
) -> list[Any]:
    """The finish script's arguments (see _redis_finish.lua)."""
    return [base, stream_id, status, terminal_data(status, message), "1" if if_expired else "0", sharded]


def info_of(stream_id: str, fields: list[Any]) -> StreamInfo | None:
    """A stream's info from its meta hash's ``INFO_FIELDS``; None for no stream."""
    status, last, route, key, owner, format_name, hold = fields
    if status is None:
        return None
    status_text: StreamStatus = text_of(status)  # type: ignore[assignment] # only scripts write it
    key_text = text_of(key) if key is not None else ""
    owner_text = text_of(owner) if owner is not None else ""
    return StreamInfo(
        stream_id,
        status_text,
        int(last),
        text_of(route) if route is not None else "",
        key_text or None,
        owner_text[1:] if owner_text else None,
        text_of(format_name) if format_name is not None else "sse",
        int(hold) / 1000 if hold is not None else 0.0,
    )
