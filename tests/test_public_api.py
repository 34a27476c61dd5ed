"""The public surface is a deliberate, small list; changing it is a decision, not an accident."""

from __future__ import annotations

import subprocess
import sys

import litestar_resumable


def test_all_is_pinned_and_sorted() -> None:
    assert litestar_resumable.__all__ == (
        "ItemEncoder",
        "MemoryStreamStore",
        "RedisStreamStore",
        "ResumablePlugin",
        "StoreUnavailableError",
        "StreamEvent",
        "StreamFormat",
        "StreamInfo",
        "StreamStatus",
        "StreamStore",
        "StreamWatch",
        "resumable",
    )
    assert list(litestar_resumable.__all__) == sorted(litestar_resumable.__all__)
    for name in litestar_resumable.__all__:
        assert getattr(litestar_resumable, name) is not None


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
