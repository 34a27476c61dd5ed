"""The public surface is a deliberate, small list; changing it is a decision, not an accident."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import typing

import litestar_resumable
import litestar_resumable.testing


def test_all_is_pinned_and_sorted() -> None:
    assert litestar_resumable.__all__ == (
        "GenerationEnd",
        "ItemEncoder",
        "KeyConflictError",
        "MemoryStreamStore",
        "RedisStreamStore",
        "ResumableError",
        "ResumablePlugin",
        "RouteOptions",
        "StoreUnavailableError",
        "StreamClosedError",
        "StreamEvent",
        "StreamExistsError",
        "StreamFormat",
        "StreamInfo",
        "StreamLimitError",
        "StreamOptions",
        "StreamStatus",
        "StreamStore",
        "StreamWatch",
        "StreamWriter",
        "SyncStreamWriter",
        "TerminalStatus",
        "resumable",
    )
    assert litestar_resumable.testing.__all__ == (
        "SSEDecoder",
        "SSEEvent",
        "SSEResponse",
        "StoreContract",
        "parse_sse",
        "read_sse",
    )
    for module in (litestar_resumable, litestar_resumable.testing):
        assert list(module.__all__) == sorted(module.__all__)
        for name in module.__all__:
            assert getattr(module, name) is not None


def test_every_error_is_a_resumable_error() -> None:
    names = [name for name in litestar_resumable.__all__ if name.endswith("Error")]
    errors = [getattr(litestar_resumable, name) for name in names]
    assert len(errors) == 6
    assert all(issubclass(error, litestar_resumable.ResumableError) for error in errors)


def test_route_options_and_stream_options_name_the_same_options() -> None:
    # StreamOptions is the definition; RouteOptions repeats its names and types for typed **kwargs.
    fields = typing.get_type_hints(litestar_resumable.StreamOptions)
    assert typing.get_type_hints(litestar_resumable.RouteOptions) == fields
    assert list(fields) == [field.name for field in dataclasses.fields(litestar_resumable.StreamOptions)]


def test_the_memory_store_works_without_redis_installed() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"  # any 'import redis' now fails
        "import litestar_resumable as m\n"
        "assert 'litestar_resumable._store.redis' not in sys.modules\n"
        "m.ResumablePlugin(m.MemoryStreamStore())\n"
        "try:\n    m.RedisStreamStore\nexcept ImportError:\n    print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.stdout.strip() == "ok", result.stderr
