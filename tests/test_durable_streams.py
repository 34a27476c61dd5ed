"""``litestar_resumable.durable_streams``: the protocol's routes on a real uvicorn server, over the memory
store and a real Redis, read and written with plain HTTP and with the Python ``durable-streams`` client.

What the protocol itself asks is the official conformance suite's job (test_durable_streams_node.py); here
is what is this library's own: ``@resumable`` streams read through the protocol, owners, bad input that
changes nothing, and the store's bound in bytes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from _support.asgi import serve, within
from _support.stores import close_store, make_store
from durable_streams import astream
from litestar import Litestar, Request, get

from example_app.app import create_app
from example_app.fake_model import answer_words
from litestar_resumable import MemoryStreamStore, RedisStreamStore, ResumablePlugin, StreamStore, resumable
from litestar_resumable._ids import new_stream_id
from litestar_resumable.durable_streams import durable_streams_router
from litestar_resumable.testing import StoreContract

WORDS = [f"word{i} " for i in range(10)] + ["ünïcødé 🙂 ", "two\nlines", 'a "quoted" \\ one']
HALF = 6


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[StreamStore]:
    if request.param == "redis":
        key_prefix = request.getfixturevalue("redis_prefix")
    made = make_store(request.param, key_prefix)
    try:
        yield made
    finally:
        await close_store(made)


def _user(request: Request[Any, Any, Any]) -> str | None:
    return request.headers.get("x-user")


def _app(store: StreamStore, gate: asyncio.Event | None = None, **options: Any) -> Litestar:
    @get("/answer")
    @resumable
    async def answer() -> Any:
        for word in WORDS[:HALF]:
            yield word
        if gate is not None:
            await gate.wait()
        for word in WORDS[HALF:]:
            yield word

    @get("/mine")
    @resumable(owner=_user)
    async def mine() -> Any:
        yield {"secret": "of x-user"}

    plugin = ResumablePlugin(store=store)
    return Litestar([answer, mine, durable_streams_router(plugin, **options)], plugins=[plugin])


async def _start(client: httpx.AsyncClient, path: str, **headers: str) -> str:
    """Start a generation and go away once its headers are in: the stream id."""
    async with client.stream("GET", path, headers=headers) as started:
        return started.headers["x-resumable-stream-id"]


async def test_the_python_client_resumes_a_resumable_stream_from_its_offset(store: StreamStore) -> None:
    gate = asyncio.Event()
    async with serve(_app(store, gate, long_poll_timeout=5)) as client:
        stream_id = await _start(client, "/answer")
        url = str(client.base_url.join(f"/v1/stream/{stream_id}"))
        first: list[Any] = []
        async with astream(url, offset="-1", live="long-poll") as response:
            async for event in response.iter_events(mode="json"):
                first.extend(event.data)
                saved = event.next_offset
                if len(first) >= HALF:
                    break  # the client goes away with its offset

        rest: list[Any] = []
        asked = asyncio.Event()

        async def asking(_request: httpx.Request) -> None:
            asked.set()

        async def resume() -> None:
            # The resumer's long-poll goes out before the generation goes on, so it has to wait live.
            async with (
                httpx.AsyncClient(event_hooks={"request": [asking]}, timeout=10) as http,
                astream(url, offset=saved, live="long-poll", client=http) as response,
            ):
                async for event in response.iter_events(mode="json"):
                    rest.extend(event.data)
                    if len(first) + len(rest) >= len(WORDS):
                        return

        reader = asyncio.create_task(resume())
        await within(asked.wait())
        gate.set()
        await within(reader)
        assert [m["data"] for m in first + rest] == WORDS, "a message missing or read twice"
        final = await client.get(f"/v1/stream/{stream_id}", params={"offset": str(saved)})
        end = await client.get(
            f"/v1/stream/{stream_id}", params={"offset": final.headers["stream-next-offset"]}
        )
        assert (end.status_code, end.json()) == (200, [])
        assert (end.headers["stream-closed"], end.headers["stream-resumable-status"]) == ("true", "done")


async def test_a_resumable_stream_reads_as_json_messages_and_only_reads(store: StreamStore) -> None:
    async with serve(_app(store)) as client:
        stream_id = await _start(client, "/answer")
        url = f"/v1/stream/{stream_id}"
        live = await client.get(url, params={"offset": "-1", "live": "sse"})
        assert live.headers["content-type"] == "text/event-stream"
        assert '"streamClosed":true' in live.text
        assert '"resumableStatus":"done"' in live.text
        body = await client.get(url)
        assert body.headers["content-type"] == "application/json"
        assert [m["data"] for m in body.json()] == WORDS
        assert body.headers["stream-closed"] == "true"
        head = await client.head(url)
        assert (head.status_code, head.headers["stream-next-offset"]) == (200, f"{len(WORDS):016d}_{0:016d}")
        for method in ("POST", "DELETE"):
            refused = await client.request(method, url, content=b"x", headers={"content-type": "text/plain"})
            assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")
        taken = await client.put(url, headers={"content-type": "text/plain"})
        assert taken.status_code == 409
        assert [m["data"] for m in (await client.get(url)).json()] == WORDS  # nothing changed


async def test_owners_have_their_own_names_and_streams(store: StreamStore) -> None:
    async with serve(_app(store, owner=_user)) as client:
        alice, bob = {"x-user": "alice"}, {"x-user": "bob"}
        for who in (alice, bob):
            created = await client.put("/v1/stream/notes", headers={**who, "content-type": "text/plain"})
            assert created.status_code == 201
            await client.post(
                "/v1/stream/notes", content=who["x-user"], headers={**who, "content-type": "text/plain"}
            )
        assert (await client.get("/v1/stream/notes", headers=alice)).text == "alice"
        assert (await client.get("/v1/stream/notes", headers=bob)).text == "bob"
        assert (await client.get("/v1/stream/notes")).status_code == 404
        assert (await client.delete("/v1/stream/notes", headers=bob)).status_code == 204
        assert (await client.get("/v1/stream/notes", headers=alice)).text == "alice"
        # A @resumable stream of alice's is hers alone, as on the plugin's own resume route.
        stream_id = await _start(client, "/mine", **alice)
        assert (await client.get(f"/v1/stream/{stream_id}", headers=bob)).status_code == 404
        assert (await client.head(f"/v1/stream/{stream_id}", headers=bob)).status_code == 404
        assert (await client.get(f"/v1/stream/{stream_id}", headers=alice)).status_code == 200


BAD_REQUESTS = [
    ("GET", {"offset": "0,1"}, {}, b""),
    ("GET", {"offset": ""}, {}, b""),
    ("GET", {"offset": "0000000000000001_0000000000000007"}, {}, b""),
    ("GET", {"offset": "9999999999999999_0000000000000000"}, {}, b""),
    ("GET", {"live": "long-poll"}, {}, b""),
    ("GET", {"offset": "-1", "live": "websocket"}, {}, b""),
    ("PUT", {}, {"content-type": "application/json", "stream-ttl": "01"}, b""),
    ("PUT", {}, {"content-type": "application/json", "stream-expires-at": "tomorrow"}, b""),
    ("PUT", {}, {"content-type": "text/plain"}, b""),  # another content type than the stream's
    ("POST", {}, {"content-type": "application/json"}, b""),
    ("POST", {}, {"content-type": "application/json"}, b"{oops"),
    ("POST", {}, {"content-type": "application/json"}, b"[]"),
    ("POST", {}, {"content-type": "application/json"}, b"\xff"),
    ("POST", {}, {}, b"[1]"),
    ("POST", {}, {"content-type": "text/plain"}, b"[1]"),
    ("POST", {}, {"content-type": "application/json", "producer-id": "p"}, b"[1]"),
    (
        "POST",
        {},
        {
            "content-type": "application/json",
            "producer-id": "p",
            "producer-epoch": "1e3",
            "producer-seq": "0",
        },
        b"[1]",
    ),
    (
        "POST",
        {},
        {
            "content-type": "application/json",
            "producer-id": "p",
            "producer-epoch": "0",
            "producer-seq": "9007199254740992",
        },
        b"[1]",
    ),
]


@pytest.mark.parametrize(("method", "params", "headers", "body"), BAD_REQUESTS)
async def test_bad_input_is_a_clear_4xx_and_changes_nothing(
    store: StreamStore, method: str, params: dict[str, str], headers: dict[str, str], body: bytes
) -> None:
    async with serve(_app(store)) as client:
        url = "/v1/stream/kept"
        await client.put(
            url, content=b'[{"n":1}]', headers={"content-type": "application/json", "stream-ttl": "600"}
        )
        before = (await client.get(url)).content, (await client.head(url)).headers["stream-next-offset"]
        answer = await client.request(method, url, params=params, headers=headers, content=body)
        assert 400 <= answer.status_code < 500, answer.text
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.text  # says what is wrong
        after = (await client.get(url)).content, (await client.head(url)).headers["stream-next-offset"]
        assert after == before


async def test_a_full_memory_store_answers_503_and_keeps_durable_streams() -> None:
    store = MemoryStreamStore(max_bytes=64 * 1024)
    async with serve(_app(store)) as client:
        await client.put("/v1/stream/a", content=b"x" * 30_000, headers={"content-type": "text/plain"})
        await client.put("/v1/stream/b", headers={"content-type": "text/plain"})
        await client.post("/v1/stream/b", headers={"stream-closed": "true"})  # ended, but durable
        full = await client.post(
            "/v1/stream/a", content=b"y" * 40_000, headers={"content-type": "text/plain"}
        )
        assert (full.status_code, full.headers["retry-after"]) == (503, "1")
        assert store.used_bytes <= store.max_bytes
        assert (await client.get("/v1/stream/a")).content == b"x" * 30_000
        assert (await client.head("/v1/stream/b")).headers["stream-closed"] == "true"


async def test_the_plugins_own_routes_do_not_serve_durable_streams(store: StreamStore) -> None:
    async with serve(_app(store)) as client:
        await client.put("/v1/stream/plain", content=b"hello", headers={"content-type": "text/plain"})
        stream_id = await store.durable_id("-:plain")
        assert stream_id is not None
        assert (await client.get(f"/resumable/streams/{stream_id}")).status_code == 404
        assert (await client.delete(f"/resumable/streams/{stream_id}")).status_code == 404


async def test_a_live_reader_of_a_deleted_and_recreated_stream_sees_only_the_new_one(
    store: StreamStore,
) -> None:
    async with serve(_app(store, long_poll_timeout=5)) as client:
        url = "/v1/stream/again"
        await client.put(url, content=b"old", headers={"content-type": "text/plain"})
        waiting = asyncio.create_task(client.get(url, params={"offset": "now", "live": "long-poll"}))
        await asyncio.sleep(0)  # (the answer is the same whether it waits or not yet)
        assert (await client.delete(url)).status_code == 204
        await client.put(url, content=b"new", headers={"content-type": "text/plain"})
        answer = await within(waiting)
        assert b"old" not in answer.content
        assert (await client.get(url)).content == b"new"
        fresh = await client.get(url, params={"offset": "-1", "live": "long-poll"})
        assert fresh.content == b"new"


async def test_an_sse_reader_gets_appends_live_and_the_close(store: StreamStore) -> None:
    async with serve(_app(store)) as client:
        url = "/v1/stream/live"
        await client.put(url, headers={"content-type": "application/json"})
        async with client.stream("GET", url, params={"offset": "now", "live": "sse"}) as events:
            lines = events.aiter_lines()
            assert await within(anext(lines)) == "event: control"
            for n in range(3):
                await client.post(
                    url, content=json.dumps({"n": n}), headers={"content-type": "application/json"}
                )
            await client.post(url, headers={"stream-closed": "true"})
            text = "\n".join([line async for line in lines])
        data = [
            json.loads(line.removeprefix("data:")) for line in text.splitlines() if line.startswith("data:[")
        ]
        assert [item for batch in data for item in batch] == [{"n": 0}, {"n": 1}, {"n": 2}]
        assert text.rstrip().endswith('"streamClosed":true,"upToDate":true}')


async def test_the_example_app_serves_its_answers_to_durable_streams_clients() -> None:
    app = create_app(store=MemoryStreamStore(), generate_in="web")
    async with serve(app) as client:
        stream_id = await _start(client, "/api/generate?prompt=hello%20there")
        url = f"/v1/stream/{stream_id}"
        read = await client.get(url, params={"offset": "-1", "live": "sse"})  # live until the answer ends
        assert '"streamClosed":true' in read.text
        answer = await client.get(url)
        assert answer.headers["stream-resumable-status"] == "done"
        texts = "".join(json.loads(message["data"])["text"] for message in answer.json())
        assert texts == "".join(answer_words("hello there"))


async def test_bytes_that_are_not_utf8_in_a_text_stream_are_kept_and_sse_replaces_them(
    store: StreamStore,
) -> None:
    async with serve(_app(store)) as client:
        url = "/v1/stream/latin"
        await client.put(
            url, content=b"caf\xe9 \xff", headers={"content-type": "text/plain", "stream-closed": "true"}
        )
        assert (await client.get(url)).content == b"caf\xe9 \xff"
        live = await client.get(url, params={"offset": "-1", "live": "sse"})
        assert (live.status_code, live.text.splitlines()[:2]) == (
            200,
            ["event: data", "data:caf\ufffd \ufffd"],
        )


async def test_a_reader_learns_that_a_streams_writer_died(store: StreamStore) -> None:
    stream_id = new_stream_id()
    # Opened for a writer elsewhere that never comes: its lease runs out, as a dead producer's does.
    await store.create(stream_id, route="-", lease=0.3, ttl=60, claimed=False)
    async with serve(_app(store, long_poll_timeout=20)) as client:
        url = f"/v1/stream/{stream_id}"
        waited = await client.get(url, params={"offset": "-1", "live": "long-poll"}, timeout=30)
        assert (waited.status_code, waited.headers["stream-closed"]) == (204, "true")
        assert waited.headers["stream-resumable-status"] == "interrupted"


class _StoreWithoutDurableStreams(MemoryStreamStore):
    """A store of an app's own that keeps no durable streams (the base class's methods)."""

    durable_id = StreamStore.durable_id
    create_durable = StreamStore.create_durable


async def test_a_store_without_durable_streams_serves_resumable_streams_only() -> None:
    async with serve(_app(_StoreWithoutDurableStreams())) as client:
        stream_id = await _start(client, "/answer")
        assert [m["data"] for m in (await client.get(f"/v1/stream/{stream_id}")).json()] == WORDS
        assert (await client.put("/v1/stream/notes")).status_code == 501
        assert (
            await client.post("/v1/stream/notes", content=b"x", headers={"content-type": "text/plain"})
        ).status_code == 404
        assert (await client.get("/v1/stream/notes")).status_code == 404


async def test_the_store_contract_skips_its_durable_tests_for_a_store_without_them() -> None:
    with pytest.raises(pytest.skip.Exception, match="does not keep durable streams"):
        await StoreContract().make_durable(_StoreWithoutDurableStreams())


async def test_a_fork_larger_than_the_redis_store_copies_is_413_and_leaves_no_trace(
    redis_prefix: str,
) -> None:
    store = make_store("redis", redis_prefix)
    assert isinstance(store, RedisStreamStore)
    store.max_fork_bytes = 1000
    try:
        async with serve(_app(store)) as client:
            await client.put("/v1/stream/big", content=b"x" * 1001, headers={"content-type": "text/plain"})
            fork = await client.put("/v1/stream/copy", headers={"stream-forked-from": "/v1/stream/big"})
            assert (fork.status_code, fork.text) == (413, "a fork copies 1000 bytes at most (max_fork_bytes)")
            assert (await client.head("/v1/stream/copy")).status_code == 404
            assert (await client.delete("/v1/stream/big")).status_code == 204
            assert (await client.head("/v1/stream/big")).status_code == 404  # gone, not kept for a fork
    finally:
        await close_store(store)
