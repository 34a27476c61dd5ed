"""Owner binding, guards and limits: what a hostile or careless client can do, and what it gets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from _support.asgi import serve, within
from litestar import Litestar, Request, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler

from litestar_resumable import ResumablePlugin, StreamStore, resumable


def user_of(request: Request[Any, Any, Any]) -> str | None:
    return request.headers.get("x-user")


async def async_user_of(request: Request[Any, Any, Any]) -> str | None:
    await asyncio.sleep(0)
    return request.headers.get("x-user")


def admin_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if connection.headers.get("x-admin") != "yes":
        raise NotAuthorizedException("admins only")


def sse_data(body: str) -> list[str]:
    return [line[6:] for line in body.splitlines() if line.startswith("data: ")]


def build_app(store: StreamStore, release: asyncio.Event, **plugin_options: Any) -> Litestar:
    @get("/mine")
    @resumable(owner=user_of)
    async def mine(n: int = 2) -> AsyncIterator[str]:
        for i in range(n):
            yield f"secret {i}"

    @get("/held/{chat:str}")
    @resumable(owner=async_user_of, key="chat")
    async def held(chat: str) -> AsyncIterator[str]:
        yield chat
        await release.wait()

    @get("/open")
    @resumable
    async def open_route() -> AsyncIterator[str]:
        yield "first"
        await release.wait()

    @get("/big")
    @resumable(max_event_bytes=1000)
    async def big(size: int) -> AsyncIterator[str]:
        yield "small"
        yield "é" * size  # two UTF-8 bytes a character

    @get("/many")
    @resumable(max_events=5)
    async def many(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @get("/popular")
    @resumable(max_followers=2)
    async def popular() -> AsyncIterator[str]:
        yield "x"
        await release.wait()

    return Litestar(
        [mine, held, open_route, big, many, popular], plugins=[ResumablePlugin(store, **plugin_options)]
    )


@pytest.fixture
def release() -> asyncio.Event:
    return asyncio.Event()


@pytest.fixture
def app(store: StreamStore, release: asyncio.Event) -> Litestar:
    return build_app(store, release, guards=[admin_only])


@pytest.fixture
async def client(app: Litestar, release: asyncio.Event) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as http:
        yield http
        release.set()


async def test_another_owner_cannot_resume_or_cancel_and_cannot_tell_the_stream_exists(
    client: httpx.AsyncClient, store: StreamStore
) -> None:
    first = await client.get("/mine", headers={"x-user": "alice"})
    stream_id = first.headers["x-resumable-stream-id"]
    info = await store.info(stream_id)
    assert info is not None
    assert info.owner == "alice"
    admin = {"x-admin": "yes"}
    unknown = "A" * 26
    for headers in ({"x-user": "mallory"}, {}):
        same_route = await client.get("/mine", headers={**headers, "Last-Event-ID": f"{stream_id}.0"})
        replay = await client.get(f"/resumable/streams/{stream_id}", headers={**headers, **admin})
        cancel = await client.delete(f"/resumable/streams/{stream_id}", headers={**headers, **admin})
        missing = await client.get(f"/resumable/streams/{unknown}", headers={**headers, **admin})
        for response in (same_route, replay, cancel):
            assert response.status_code == 404
            assert response.json()["detail"] == missing.json()["detail"].replace(unknown, stream_id)
    owner_replay = await client.get(f"/resumable/streams/{stream_id}", headers={"x-user": "alice", **admin})
    assert sse_data(owner_replay.text)[:2] == ["secret 0", "secret 1"]
    assert (await store.read_after(stream_id, 0, limit=10))[-1].is_terminal


async def test_keys_are_per_owner_and_owners_find_only_their_own(
    client: httpx.AsyncClient, app: Litestar, store: StreamStore, release: asyncio.Event
) -> None:
    plugin = app.plugins.get(ResumablePlugin)
    async with (
        client.stream("GET", "/held/42", headers={"x-user": "alice"}) as alice,
        client.stream("GET", "/held/42", headers={"x-user": "bob"}) as bob,
    ):
        alice_id = alice.headers["x-resumable-stream-id"]
        bob_id = bob.headers["x-resumable-stream-id"]
        # Bob's chat 42 did not cancel Alice's chat 42.
        assert await plugin.active_stream_id("42", owner="alice") == alice_id
        assert await plugin.active_stream_id("42", owner="bob") == bob_id
        assert await plugin.active_stream_id("42") is None
        assert await plugin.cancel(alice_id, owner="bob") is None
        info = await store.info(alice_id)
        assert info is not None
        assert info.is_running
        release.set()


async def test_guards_protect_the_plugins_own_routes(client: httpx.AsyncClient) -> None:
    stream_id = (await client.get("/mine")).headers["x-resumable-stream-id"]
    assert (await client.get(f"/resumable/streams/{stream_id}")).status_code == 401
    assert (await client.delete(f"/resumable/streams/{stream_id}")).status_code == 401
    assert (
        await client.get(f"/resumable/streams/{stream_id}", headers={"x-admin": "yes"})
    ).status_code == 200


async def test_an_oversized_event_ends_the_stream_with_a_clear_error(client: httpx.AsyncClient) -> None:
    body = (await client.get("/big", params={"size": 600})).text
    data = sse_data(body)
    assert data[0] == "small"
    assert msgspec.json.decode(data[-1]) == {
        "status": "error",
        "message": "an event of 1200 bytes passed max_event_bytes (1000)",
    }
    assert len(data) == 2  # the oversized event was not stored
    assert sse_data((await client.get("/big", params={"size": 400})).text)[-1] == '{"status":"done"}'


async def test_a_stream_ends_at_max_events(client: httpx.AsyncClient) -> None:
    data = sse_data((await client.get("/many", params={"n": 50})).text)
    assert data[:5] == ["0", "1", "2", "3", "4"]
    assert msgspec.json.decode(data[-1]) == {"status": "error", "message": "the stream passed max_events (5)"}


async def test_followers_per_stream_are_limited(client: httpx.AsyncClient, release: asyncio.Event) -> None:
    admin = {"x-admin": "yes"}
    async with client.stream("GET", "/popular") as first:
        stream_id = first.headers["x-resumable-stream-id"]
        # A follower counts once its body is being read. Keep the line iterators: a dropped one closes
        # its response.
        first_lines = first.aiter_lines()
        await within(anext(first_lines))
        async with client.stream("GET", f"/resumable/streams/{stream_id}", headers=admin) as second:
            second_lines = second.aiter_lines()
            await within(anext(second_lines))
            third = await client.get(f"/resumable/streams/{stream_id}", headers=admin)
            assert third.status_code == 429
            assert "max_followers (2)" in third.json()["detail"]
            assert third.headers["content-type"].startswith("application/json")
        release.set()


async def test_generations_are_limited_globally_and_per_owner(
    store: StreamStore, release: asyncio.Event
) -> None:
    app = build_app(store, release, max_generations=3, max_generations_per_owner=1)
    async with (
        serve(app) as client,
        client.stream("GET", "/held/1", headers={"x-user": "alice"}),
        client.stream("GET", "/open"),
    ):
        second = await client.get("/held/2", headers={"x-user": "alice"})
        assert second.status_code == 429
        assert "max_generations_per_owner (1)" in second.json()["detail"]
        async with client.stream("GET", "/held/3", headers={"x-user": "bob"}):
            fourth = await client.get("/open")
            assert fourth.status_code == 429
            assert "max_generations (3)" in fourth.json()["detail"]
            release.set()


def build_keyed_app(
    store: StreamStore, release: asyncio.Event, **plugin_options: Any
) -> tuple[Litestar, ResumablePlugin]:
    @get("/chat/{chat:str}")
    @resumable(key="chat", on_conflict="reject")
    async def chat(chat: str) -> AsyncIterator[str]:
        yield chat
        await release.wait()

    @get("/replace/{chat:str}")
    @resumable(key="chat")
    async def replace(chat: str) -> AsyncIterator[str]:
        yield chat
        await release.wait()

    plugin = ResumablePlugin(store, owner=user_of, **plugin_options)
    return Litestar([chat, replace], plugins=[plugin]), plugin


async def test_a_key_cannot_pose_as_another_owners_key_and_409_does_not_show_owners(
    store: StreamStore, release: asyncio.Event
) -> None:
    # Regression: scoped keys were owner + "\x1f" + key, so the key "alice\x1f42" without an owner was
    # Alice's chat 42, and the 409 message showed the owner id.
    app, plugin = build_keyed_app(store, release)
    async with (
        serve(app) as client,
        client.stream("GET", "/chat/42", headers={"x-user": "alice"}) as alice,
    ):
        alice_id = alice.headers["x-resumable-stream-id"]
        async with client.stream("GET", "/chat/alice%1F42") as forged:
            assert forged.status_code == 200  # a chat of its own, not a conflict with Alice's
            assert forged.headers["x-resumable-stream-id"] != alice_id
        again = await client.get("/chat/42", headers={"x-user": "alice"})
        assert again.status_code == 409
        assert (
            again.json()["detail"] == "a generation for '42' is already running; resume it or cancel it first"
        )
        assert await plugin.active_stream_id("42", owner="alice") == alice_id
        release.set()


async def test_a_new_answer_in_the_same_chat_is_not_refused_by_the_per_owner_limit(
    store: StreamStore, release: asyncio.Event
) -> None:
    # Regression: limits were checked before the key claim, so the generation being replaced counted.
    app, plugin = build_keyed_app(store, release, max_generations_per_owner=1)
    async with (
        serve(app) as client,
        client.stream("GET", "/replace/7", headers={"x-user": "bob"}) as first,
    ):
        lines = first.aiter_lines()
        while "7" not in await within(anext(lines)):
            pass
        async with client.stream("GET", "/replace/7", headers={"x-user": "bob"}) as second:
            assert second.status_code == 200
            assert await plugin.active_stream_id("7", owner="bob") == second.headers["x-resumable-stream-id"]
            other_chat = await client.get("/chat/8", headers={"x-user": "bob"})
            assert other_chat.status_code == 429
            release.set()


async def test_owner_ids_are_strings_whatever_the_owner_function_returns(
    store: StreamStore, release: asyncio.Event
) -> None:
    # Regression: an int owner id came back from Redis as a string, and the owner got 404 on their stream.
    @get("/numbered")
    @resumable(owner=lambda request: int(request.headers["x-user-number"]))
    async def numbered() -> AsyncIterator[str]:
        yield "mine"

    async with serve(Litestar([numbered], plugins=[ResumablePlugin(store)])) as client:
        first = await client.get("/numbered", headers={"x-user-number": "7"})
        stream_id = first.headers["x-resumable-stream-id"]
        replay = await client.get(f"/resumable/streams/{stream_id}", headers={"x-user-number": "7"})
        assert replay.status_code == 200
        assert (
            await client.get(f"/resumable/streams/{stream_id}", headers={"x-user-number": "8"})
        ).status_code == 404


async def test_an_owner_function_that_refuses_cannot_tell_known_ids_from_unknown(
    store: StreamStore, release: asyncio.Event
) -> None:
    def signed_in(request: Request[Any, Any, Any]) -> str:
        if "x-user" not in request.headers:
            raise NotAuthorizedException("sign in first")
        return request.headers["x-user"]

    @get("/private")
    @resumable(owner=signed_in)
    async def private() -> AsyncIterator[str]:
        yield "x"

    async with serve(Litestar([private], plugins=[ResumablePlugin(store)])) as client:
        stream_id = (await client.get("/private", headers={"x-user": "eve"})).headers["x-resumable-stream-id"]
        known = await client.get(f"/resumable/streams/{stream_id}")
        unknown = await client.get("/resumable/streams/AAAAAAAAAAAAAAAAAAAAAA")
        assert known.status_code == unknown.status_code == 401


def test_generation_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_generations must be at least 1"):
        ResumablePlugin(max_generations=0)
    with pytest.raises(ValueError, match="max_generations_per_owner must be at least 1"):
        ResumablePlugin(max_generations_per_owner=-1)
