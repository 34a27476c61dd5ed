"""What app authors and store authors need to test their own code against litestar-resumable.

- :func:`read_sse` reads a stream's events from Litestar's ``AsyncTestClient`` (or any ``httpx.AsyncClient``,
  such as one on a live server), stops after ``max_events`` as a client that drops would, and resumes
  with ``Last-Event-ID``, so a test asserts "no duplicate, no gap" in a few lines.
- :class:`StoreContract` is the test suite every :class:`StreamStore` passes: subclass it in a test module
  and override its ``store`` fixture (and ``peer_store`` for stores shared between processes).
- :func:`parse_sse` and :class:`SSEDecoder` read SSE text as a browser does.

``StoreContract`` needs pytest and pytest-asyncio, as any async test suite does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar_resumable._sse import SSEDecoder, SSEEvent
from litestar_resumable.testing._reading import SSEResponse, parse_sse, read_sse

if TYPE_CHECKING:
    from litestar_resumable.testing._contract import StoreContract

__all__ = ("SSEDecoder", "SSEEvent", "SSEResponse", "StoreContract", "parse_sse", "read_sse")


def __getattr__(name: str) -> Any:
    # pytest is needed for the contract suite only: the readers work without it.
    if name == "StoreContract":
        from litestar_resumable.testing._contract import StoreContract  # noqa: PLC0415

        return StoreContract
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
