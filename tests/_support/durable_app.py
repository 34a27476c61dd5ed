"""The app the Durable Streams tests run under uvicorn: ``uvicorn _support.durable_app:app --app-dir tests``.

The protocol's routes (``durable_streams_router``) at their default path, with CORS open to every origin
(the conformance suite checks a preflight), and ``/pid`` for the server helper. Configured by environment
variables, so each server process gets its own settings:

- ``DS_REDIS_URL``: use a :class:`RedisStreamStore` on this Redis, under ``DS_KEY_PREFIX`` (with
  ``DS_REDIS_CLUSTER=1``, a Redis Cluster one of whose nodes the URL names); unset, the in-process
  :class:`MemoryStreamStore`;
- ``DS_LONG_POLL``: seconds a long-poll waits for data (default 1: the suite waits out a few timeouts).
"""

import os

from litestar import Litestar, get
from litestar.config.cors import CORSConfig

from litestar_resumable import MemoryStreamStore, RedisStreamStore, ResumablePlugin, StreamStore
from litestar_resumable.durable_streams import EXPOSED_HEADERS, durable_streams_router


def _store() -> StreamStore:
    url = os.environ.get("DS_REDIS_URL")
    if url:
        cluster = os.environ.get("DS_REDIS_CLUSTER") == "1"
        return RedisStreamStore.from_url(url, cluster=cluster, key_prefix=os.environ["DS_KEY_PREFIX"])
    return MemoryStreamStore()


@get("/pid")
async def pid() -> int:
    return os.getpid()


plugin = ResumablePlugin(store=_store())
app = Litestar(
    [pid, durable_streams_router(plugin, long_poll_timeout=float(os.environ.get("DS_LONG_POLL", "1")))],
    plugins=[plugin],
    cors_config=CORSConfig(allow_origins=["*"], allow_headers=["*"], expose_headers=list(EXPOSED_HEADERS)),
)
