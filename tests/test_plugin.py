"""The plugin and @resumable on a real uvicorn server in the test's event loop, over every store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from _support.asgi import serve, within
from _support.reading import ended, read_until
from _support.stores import FailingStore, close_store, make_store
from litestar import Litestar, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ImproperlyConfiguredException
from litestar.response import ServerSentEventMessage

from litestar_resumable import (
    MemoryStreamStore,
    RedisStreamStore,
    ResumablePlugin,
    StreamStore,
    resumable,
)
from litestar_resumable.testing import parse_sse


class Point(msgspec.Struct):
    x: int
    y: int


class Gate:
    """Lets a test hold a handler at a point and release it, instead of sleeping."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.open = asyncio.Event()
        self.finished = asyncio.Event()
        self.calls = 0


def build_app(store: StreamStore, gate: Gate, **plugin_options: Any) -> Litestar:
    @get("/count")
    @resumable
    async def count(n: int = 5) -> AsyncIterator[str]:
        gate.calls += 1
        for i in range(n):
            yield str(i)

    @get("/kinds")
    @resumable
    async def kinds() -> AsyncIterator[Any]:
        yield "text"
        yield b"bytes"
        yield {"a": [1, 2]}
        yield [1, "two"]
        yield Point(1, 2)
        yield ServerSentEventMessage(data="custom", event="tool", id="ignored")
        yield "multi\nline\r\ntext"

    @get("/held")
    @resumable(heartbeat=0.05)
    async def held(n: int = 1) -> AsyncIterator[str]:
        gate.calls += 1
        for i in range(n):
            yield f"held {i}"
        gate.reached.set()
        try:
            await gate.open.wait()
            yield "released"
        finally:
            gate.finished.set()

    @get("/boom")
    @resumable
    async def boom() -> AsyncIterator[str]:
        yield "before"
        raise RuntimeError("secret detail")

    @get("/boom-exposed")
    @resumable(expose_errors=True)
    async def boom_exposed() -> AsyncIterator[str]:
        yield "before"
        raise RuntimeError("visible detail")

    @get("/plain")
    @resumable(enabled=False)
    async def plain() -> AsyncIterator[str]:
        yield "a"
        yield "b"

    @post("/chat/{chat_id:str}")
    @resumable(key="chat_id")
    async def chat(chat_id: str, data: dict[str, str]) -> AsyncIterator[str]:
        gate.calls += 1
        yield f"{chat_id}: {data['prompt']}"
        gate.reached.set()
        try:
            await gate.open.wait()
        finally:
            gate.finished.set()

    @post("/strict/{chat_id:str}")
    @resumable(key="chat_id", on_conflict="reject")
    async def strict(chat_id: str) -> AsyncIterator[str]:
        yield chat_id
        await gate.open.wait()

    def greeting() -> str:
        return "hello"

    @get("/di/{name:str}", dependencies={"greeting": Provide(greeting, sync_to_thread=False)})
    @resumable
    async def di(
        name: str, greeting: NamedDependency[str], request: Request[Any, Any, Any], times: int = 1
    ) -> AsyncIterator[str]:
        for _ in range(times):
            yield f"{greeting} {name} from {request.url.path}"

    @get("/fast")
    @resumable
    async def fast(n: int = 10_000) -> AsyncIterator[str]:
        for i in range(n):
            yield str(i)

    return Litestar(
        [count, kinds, held, boom, boom_exposed, plain, chat, strict, di, fast],
        plugins=[ResumablePlugin(store, **plugin_options)],
    )


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def app(store: StreamStore, gate: Gate) -> Litestar:
    return build_app(store, gate)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as http:
        yield http


async def test_a_generation_is_sse_with_ids_and_one_terminal_event(client: httpx.AsyncClient) -> None:
    response = await client.get("/count", params={"n": 3})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert "no-cache" in response.headers["cache-control"]
    assert response.headers["x-accel-buffering"] == "no"
    stream_id = response.headers["x-resumable-stream-id"]
    assert response.text.startswith("retry: 1000\n\n")
    events = parse_sse(response.text)
    assert [e.id for e in events] == [f"{stream_id}.{p}" for p in (1, 2, 3, 4)]
    assert [e.data for e in events[:3]] == ["0", "1", "2"]
    assert events[3].event == "end"
    assert events[3].json() == {"status": "done"}


async def test_stream_ids_are_unguessable_and_event_ids_cors_safe(client: httpx.AsyncClient) -> None:
    ids = set()
    for _ in range(20):
        response = await client.get("/count", params={"n": 1})
        ids.add(response.headers["x-resumable-stream-id"])
        for event in parse_sse(response.text):
            assert len(event.id) <= 128
            assert set(event.id) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
    assert len(ids) == 20
    assert all(len(i) == 26 for i in ids)  # a 4-character tag, then 16 random bytes in URL-safe base64


async def test_every_kind_of_item_becomes_one_event(client: httpx.AsyncClient) -> None:
    events = parse_sse((await client.get("/kinds")).text)
    assert [e.data for e in events[:-1]] == [
        "text",
        "bytes",
        '{"a":[1,2]}',
        '[1,"two"]',
        '{"x":1,"y":2}',
        "custom",
        "multi\nline\ntext",
    ]
    assert events[5].event == "tool"
    assert events[5].id.endswith(".6")  # the message's own id is replaced


async def test_resume_with_last_event_id_on_the_same_route_does_not_call_the_handler(
    client: httpx.AsyncClient, gate: Gate
) -> None:
    first = await client.get("/count", params={"n": 4})
    ids = [e.id for e in parse_sse(first.text)]
    resumed = await client.get("/count", params={"n": 4}, headers={"Last-Event-ID": ids[1]})
    assert [e.data for e in parse_sse(resumed.text)][:-1] == ["2", "3"]
    assert [e.id for e in parse_sse(resumed.text)] == ids[2:]
    by_query = await client.get("/count", params={"last_event_id": ids[2]})
    assert [e.id for e in parse_sse(by_query.text)] == ids[3:]
    assert gate.calls == 1


async def test_the_header_wins_over_the_query_parameter(client: httpx.AsyncClient) -> None:
    ids = [e.id for e in parse_sse((await client.get("/count", params={"n": 3})).text)]
    resumed = await client.get("/count", params={"last_event_id": ids[0]}, headers={"Last-Event-ID": ids[1]})
    assert [e.id for e in parse_sse(resumed.text)] == ids[2:]


async def test_resume_route_replays_from_the_start_or_after_a_position(client: httpx.AsyncClient) -> None:
    first = await client.get("/count", params={"n": 3})
    stream_id = first.headers["x-resumable-stream-id"]
    replay = await client.get(f"/resumable/streams/{stream_id}")
    assert replay.text == first.text
    assert replay.headers["x-resumable-stream-id"] == stream_id
    after = await client.get(f"/resumable/streams/{stream_id}", headers={"Last-Event-ID": f"{stream_id}.2"})
    assert parse_sse(after.text)[0].data == "2"


async def test_resuming_after_the_terminal_event_is_204(client: httpx.AsyncClient) -> None:
    first = await client.get("/count", params={"n": 2})
    terminal_id = parse_sse(first.text)[-1].id
    assert (await client.get("/count", headers={"Last-Event-ID": terminal_id})).status_code == 204
    stream_id = first.headers["x-resumable-stream-id"]
    resumed = await client.get(f"/resumable/streams/{stream_id}", params={"last_event_id": terminal_id})
    assert resumed.status_code == 204


@pytest.mark.parametrize(
    ("last_event_id", "message"),
    [
        ("garbage", "malformed event id"),
        ("x" * 200, "longer than 128"),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAA.-1", "malformed event id"),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAA.01", "malformed event id"),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAA.1.2", "malformed event id"),
        ("AAAAAAAAAAAAAAAAAAAA\u00e9A.1", "malformed event id"),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAA.99999999999999999999", "malformed event id"),
    ],
)
async def test_a_malformed_position_is_400_and_changes_nothing(
    client: httpx.AsyncClient, store: StreamStore, gate: Gate, last_event_id: str, message: str
) -> None:
    first = await client.get("/count", params={"n": 2})
    stream_id = first.headers["x-resumable-stream-id"]
    before = await store.read_after(stream_id, 0, limit=100)
    for response in (
        await client.get("/count", params={"last_event_id": last_event_id}),
        await client.get(f"/resumable/streams/{stream_id}", params={"last_event_id": last_event_id}),
    ):
        assert response.status_code == 400
        assert message in response.json()["detail"]
    assert await store.read_after(stream_id, 0, limit=100) == before
    assert gate.calls == 1


async def test_unknown_streams_are_404_and_other_mistakes_400(client: httpx.AsyncClient) -> None:
    unknown = "A" * 26
    first = await client.get("/count", params={"n": 2})
    stream_id = first.headers["x-resumable-stream-id"]
    cases = [
        (await client.get(f"/resumable/streams/{unknown}"), 404, "unknown or expired stream"),
        (await client.get("/count", headers={"Last-Event-ID": f"{unknown}.1"}), 404, "unknown or expired"),
        (await client.delete(f"/resumable/streams/{unknown}"), 404, "unknown or expired"),
        # An id of another shape than ours is as unknown as any other (and tells a prober nothing).
        (await client.get("/resumable/streams/short"), 404, "unknown or expired"),
        (await client.delete("/resumable/streams/short"), 404, "unknown or expired"),
        # An id of another stream on the resume route of this one.
        (
            await client.get(f"/resumable/streams/{stream_id}", headers={"Last-Event-ID": f"{unknown}.1"}),
            400,
            "another stream",
        ),
        # A stream of another route resumed on this route.
        (await client.get("/kinds", headers={"Last-Event-ID": f"{stream_id}.1"}), 404, "unknown or expired"),
        (await client.get("/count", headers={"Last-Event-ID": f"{stream_id}.9"}), 400, "ahead of stream"),
    ]
    for response, status, message in cases:
        assert response.status_code == status, response.text
        assert message in response.json()["detail"]


async def test_a_handler_error_ends_the_stream_without_leaking_the_exception(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.get("/boom")).text
    events = parse_sse(body)
    assert [e.data for e in events[:-1]] == ["before"]
    assert events[-1].json() == {"status": "error"}
    assert "secret detail" not in body
    assert "Traceback" not in body
    exposed = parse_sse((await client.get("/boom-exposed")).text)
    assert exposed[-1].json() == {"status": "error", "message": "visible detail"}


async def test_disabled_route_is_a_plain_sse_stream(client: httpx.AsyncClient, store: StreamStore) -> None:
    response = await client.get("/plain")
    assert response.status_code == 200
    assert "x-resumable-stream-id" not in response.headers
    assert response.text == "data: a\n\ndata: b\n\n"


async def test_dependency_injection_and_request_reach_the_handler(client: httpx.AsyncClient) -> None:
    events = parse_sse((await client.get("/di/ada", params={"times": 2})).text)
    assert [e.data for e in events[:-1]] == ["hello ada from /di/ada"] * 2


async def test_client_disconnect_does_not_stop_the_generation(client: httpx.AsyncClient, gate: Gate) -> None:
    async with client.stream("GET", "/held", params={"n": 2}) as response:
        stream_id = response.headers["x-resumable-stream-id"]
        events = await within(read_until(response, lambda ev: len(ev) >= 2))
        assert [e.data for e in events] == ["held 0", "held 1"]
    # The reader is gone; the generation goes on.
    await within(gate.reached.wait())
    gate.open.set()
    await within(gate.finished.wait())
    replay = parse_sse((await client.get(f"/resumable/streams/{stream_id}")).text)
    assert [e.data for e in replay[:-1]] == ["held 0", "held 1", "released"]
    assert replay[-1].json() == {"status": "done"}


async def test_the_first_event_goes_out_before_the_generator_goes_on(
    client: httpx.AsyncClient, gate: Gate
) -> None:
    # The handler is stuck after one item: only an unbatched, prompt write can deliver it.
    async with client.stream("GET", "/held", params={"n": 1}) as response:
        events = await within(read_until(response, lambda ev: len(ev) >= 1))
        assert events[0].data == "held 0"
        assert not gate.open.is_set()
        gate.open.set()


async def test_heartbeats_are_comments_without_ids_while_idle(client: httpx.AsyncClient, gate: Gate) -> None:
    async with client.stream("GET", "/held", params={"n": 1}) as response:
        buffer = ""
        async for chunk in response.aiter_text():
            buffer += chunk
            if buffer.count(": ping\n\n") >= 2:
                break
        gate.open.set()
    blocks = [b for b in buffer.split("\n\n") if b.startswith(": ping")]
    assert blocks
    assert all("id:" not in b for b in blocks)


async def test_a_fast_generator_costs_far_less_than_one_write_per_chunk(
    store: StreamStore, gate: Gate, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = []
    original = store.append

    async def counting_append(stream_id: str, events: Any, *, lease: float) -> bool:
        writes.append(len(events))
        return await original(stream_id, events, lease=lease)

    monkeypatch.setattr(store, "append", counting_append)
    async with serve(build_app(store, gate)) as client:
        body = (await client.get("/fast", params={"n": 10_000})).text
    assert len(parse_sse(body)) == 10_001
    assert sum(writes) == 10_000
    assert len(writes) <= 10_000 * 0.1


async def test_a_key_has_one_active_generation_and_a_new_one_cancels_it(
    client: httpx.AsyncClient, app: Litestar, gate: Gate
) -> None:
    plugin = app.plugins.get(ResumablePlugin)
    async with client.stream("POST", "/chat/c1", json={"prompt": "one"}) as first:
        first_id = first.headers["x-resumable-stream-id"]
        await within(read_until(first, lambda ev: len(ev) >= 1))
        assert await plugin.active_stream_id("c1") == first_id
        gate.reached.clear()
        async with client.stream("POST", "/chat/c1", json={"prompt": "two"}) as second:
            second_id = second.headers["x-resumable-stream-id"]
            # The first stream's follower ends with the cancelled terminal event.
            events = await within(read_until(first, ended))
            assert events[-1].json() == {"status": "cancelled"}
            await within(read_until(second, lambda ev: len(ev) >= 1))
            assert await plugin.active_stream_id("c1") == second_id
            gate.open.set()
            await within(read_until(second, ended))
    assert await plugin.active_stream_id("c1") is None


async def test_reject_policy_answers_409_with_the_running_stream(
    client: httpx.AsyncClient, gate: Gate
) -> None:
    async with client.stream("POST", "/strict/c2") as first:
        first_id = first.headers["x-resumable-stream-id"]
        await within(read_until(first, lambda ev: len(ev) >= 1))
        second = await client.post("/strict/c2")
        assert second.status_code == 409
        assert second.json()["extra"] == {"stream_id": first_id}
        gate.open.set()


async def test_cancel_route_ends_a_running_generation_for_its_followers(
    client: httpx.AsyncClient, gate: Gate
) -> None:
    async with client.stream("GET", "/held", params={"n": 1}) as response:
        stream_id = response.headers["x-resumable-stream-id"]
        await within(read_until(response, lambda ev: len(ev) >= 1))
        cancelled = await client.delete(f"/resumable/streams/{stream_id}")
        assert cancelled.status_code == 202
        assert cancelled.json() == {"stream_id": stream_id, "status": "cancelled"}
        events = await within(read_until(response, ended))
        assert events[-1].json() == {"status": "cancelled"}
    await within(gate.finished.wait())  # the generator itself was stopped
    again = await client.delete(f"/resumable/streams/{stream_id}")
    assert again.json()["status"] == "cancelled"


async def test_a_cancel_from_another_worker_stops_the_generator_at_once(
    store: StreamStore, peer_store: StreamStore, gate: Gate
) -> None:
    # A 60 s lease: a renewal (every 20 s) cannot be what stops it within the 10 s bound below.
    async with (
        serve(build_app(store, gate, lease=60.0)) as client,
        client.stream("GET", "/held", params={"n": 1}) as response,
    ):
        stream_id = response.headers["x-resumable-stream-id"]
        await within(read_until(response, lambda ev: len(ev) >= 1))
        await peer_store.finish(stream_id, "cancelled")
        await within(gate.finished.wait())
        events = await within(read_until(response, ended))
        assert events[-1].json() == {"status": "cancelled"}
    assert not gate.open.is_set()


async def test_shutdown_is_bounded_and_ends_every_stream(
    store_kind: str, key_prefix: str, fake_server: object, gate: Gate
) -> None:
    store = make_store(store_kind, key_prefix, fake_server)
    peer = make_store(store_kind, key_prefix, fake_server) if store_kind != "memory" else store
    async with (
        serve(build_app(store, gate, shutdown_grace=0.1)) as client,
        client.stream("GET", "/held", params={"n": 1}) as response,
    ):
        stream_id = response.headers["x-resumable-stream-id"]
        await within(read_until(response, lambda ev: len(ev) >= 1))
    # Leaving the client ran the app's shutdown: the held generator was interrupted, not awaited.
    assert gate.finished.is_set()
    info = await peer.info(stream_id)
    assert info is not None
    assert info.status == "interrupted"
    events = await peer.read_after(stream_id, 0, limit=10)
    assert events[-1].is_terminal
    await close_store(store)
    if peer is not store:
        await close_store(peer)


async def test_a_route_without_the_plugin_fails_at_startup() -> None:
    @get("/orphan")
    @resumable
    async def orphan() -> AsyncIterator[str]:
        yield "x"

    with pytest.raises(ImproperlyConfiguredException, match="resumable_plugin"):
        Litestar([orphan])


def test_misuse_of_the_decorator_fails_at_import_time() -> None:
    with pytest.raises(TypeError, match="async generator function"):

        @resumable
        async def not_a_generator() -> str:  # type: ignore[type-var]
            return "x"

    with pytest.raises(TypeError, match="under the route decorator"):

        @resumable  # type: ignore[arg-type]
        @get("/wrong-order")
        async def wrong_order() -> str:
            return "x"

    with pytest.raises(TypeError, match="no parameter 'chat'"):

        @resumable(key="chat")
        async def keyed(chat_id: str) -> AsyncIterator[str]:
            yield chat_id


def test_invalid_options_fail_at_startup() -> None:
    @get("/bad")
    @resumable(ttl=-1)
    async def bad() -> AsyncIterator[str]:
        yield "x"

    with pytest.raises(ImproperlyConfiguredException, match="ttl must be a positive"):
        Litestar([bad], plugins=[ResumablePlugin()])
    with pytest.raises(ValueError, match="on_conflict"):
        ResumablePlugin(on_conflict="ignore")  # type: ignore[arg-type]


def test_the_default_store_is_in_memory() -> None:
    assert isinstance(ResumablePlugin().store, MemoryStreamStore)


@pytest.mark.parametrize("accept", [0, 2])
async def test_a_store_that_refuses_writes_ends_the_stream_as_error_not_done_and_never_hangs(
    accept: int, gate: Gate
) -> None:
    # Regressions: a generator waiting for room was never woken when the writer died (the producer hung
    # and stopped renewing its lease), and a failed last write still ended the stream as done.
    store = FailingStore(ok=accept)
    async with serve(build_app(store, gate, max_batch_bytes=1, store_retry_for=0)) as client:
        async with client.stream("GET", "/fast", params={"n": 1000}) as response:
            stream_id = response.headers["x-resumable-stream-id"]
            events = await within(read_until(response, ended))
        assert events[-1].json() == {"status": "error"}
        assert [e.data for e in events[:-1]] == [str(i) for i in range(accept)]
        info = await store.info(stream_id)
        assert info is not None
        assert info.status == "error"


async def test_an_unreachable_store_answers_503_not_500(gate: Gate) -> None:
    store = RedisStreamStore.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=1)
    async with serve(build_app(store, gate)) as client:
        for response in (
            await client.get("/count"),
            await client.get("/resumable/streams/AAAAAAAAAAAAAAAAAAAAAAAAAA"),
            await client.delete("/resumable/streams/AAAAAAAAAAAAAAAAAAAAAAAAAA"),
            await client.get("/count", headers={"Last-Event-ID": "AAAAAAAAAAAAAAAAAAAAAAAAAA.1"}),
        ):
            assert response.status_code == 503
            assert response.json()["detail"] == "the stream store is unavailable; try again shortly"
            assert response.headers["retry-after"] == "1"


async def test_a_post_route_starts_with_200_not_201(client: httpx.AsyncClient, gate: Gate) -> None:
    async with client.stream("POST", "/chat/status", json={"prompt": "p"}) as response:
        assert response.status_code == 200
        gate.open.set()


def test_an_empty_event_name_is_no_event_name() -> None:
    from litestar_resumable._events import encode_item  # noqa: PLC0415

    assert encode_item(ServerSentEventMessage(data="x", event="")) == (None, "x")


async def test_a_store_that_fails_stops_a_quiet_generator_at_once(gate: Gate) -> None:
    # Regression: a writer that gave up was only noticed at the generator's next yield; a generator
    # waiting on its model went on (and its followers waited) until then.
    store = FailingStore(ok=0)
    async with serve(build_app(store, gate, store_retry_for=0)) as client:
        async with client.stream("GET", "/held", params={"n": 1}) as response:
            events = await within(read_until(response, ended))
        assert events[-1].json() == {"status": "error"}
        await within(gate.finished.wait())  # the generator was stopped while it waited
        assert not gate.open.is_set()


async def test_a_quiet_generator_keeps_its_lease(store: StreamStore, gate: Gate) -> None:
    # The producer renews its lease every lease / 3 while the generator thinks; followers checking the
    # lease every lease / 2 must not take it for dead.
    async with (
        serve(build_app(store, gate, lease=0.3)) as client,
        client.stream("GET", "/held", params={"n": 1}) as response,
    ):
        await within(read_until(response, lambda ev: len(ev) >= 1))
        await asyncio.sleep(1.5)  # five leases of thinking: a deadline to wait out, not a synchronisation
        gate.open.set()
        events = await within(read_until(response, ended))
    assert [e.data for e in events[:-1]] == ["held 0", "released"]
    assert events[-1].json() == {"status": "done"}
