"""@resumable in the shapes apps are written in: Controllers, Routers with their own dependencies and
guards, and dependencies with ``yield`` (a database session) that must live as long as the generation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from _support.asgi import serve, within
from _support.reading import ended, read_until
from litestar import Controller, Litestar, Request, Router, get, post
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler

from litestar_resumable import ResumablePlugin, StreamStore, resumable
from litestar_resumable.testing import parse_sse, read_sse


def user_of(request: Request[Any, Any, Any]) -> str | None:
    return request.headers.get("x-user")


class Resource:
    """What a dependency with ``yield`` hands out: it knows whether it is open, and logs its life."""

    def __init__(self, log: list[str], name: str) -> None:
        self.log = log
        self.name = name
        self.open = True

    def use(self, what: str) -> str:
        assert self.open, f"{self.name} was used after it was closed"
        self.log.append(f"use {what}")
        return what


# -- Controllers --


class ChatController(Controller):
    path = "/chats"
    dependencies = {"greeting": Provide(lambda: "hello", sync_to_thread=False)}  # noqa: RUF012 - Litestar's

    calls: list[str] = []  # noqa: RUF012 - the test reads it

    @get("/{chat_id:str}/stream")
    @resumable(key="chat_id", owner=user_of)
    async def stream(self, chat_id: str, greeting: NamedDependency[str], n: int = 3) -> AsyncIterator[str]:
        self.calls.append(chat_id)
        assert isinstance(self, ChatController)
        for i in range(n):
            yield f"{greeting} {chat_id} {i}"

    @post("/{chat_id:str}/hold")
    @resumable(key="chat_id")
    async def hold(self, chat_id: str) -> AsyncIterator[str]:
        yield chat_id
        await asyncio.Event().wait()


@pytest.fixture
async def controller_client(store: StreamStore) -> AsyncIterator[httpx.AsyncClient]:
    ChatController.calls.clear()
    async with serve(Litestar([ChatController], plugins=[ResumablePlugin(store)])) as client:
        yield client


async def test_a_controller_method_streams_resumes_and_keys_by_its_parameter(
    controller_client: httpx.AsyncClient,
) -> None:
    ada = {"x-user": "ada"}
    first = await read_sse(controller_client, "GET", "/chats/c1/stream", headers=ada, max_events=2)
    assert first.status_code == 200
    assert [e.data for e in first.events] == ["hello c1 0", "hello c1 1"]
    rest = await read_sse(
        controller_client, "GET", "/chats/c1/stream", headers=ada, last_event_id=first.last_event_id
    )
    assert [e.data for e in rest.events[:-1]] == ["hello c1 2"]
    assert [e.position for e in first.events + rest.events] == [1, 2, 3, 4]
    assert ChatController.calls == ["c1"]  # the resume did not call the handler again
    # The stream is the user's: another user cannot resume it or even see that it exists.
    other = await controller_client.get(
        "/chats/c1/stream", headers={"x-user": "bob", "Last-Event-ID": first.last_event_id or ""}
    )
    assert other.status_code == 404


async def test_a_controller_generation_holds_its_key_and_is_cancelled_by_the_next(
    controller_client: httpx.AsyncClient,
) -> None:
    async with controller_client.stream("POST", "/chats/c2/hold") as first:
        await within(read_until(first, lambda events: len(events) >= 1))
        second = await read_sse(controller_client, "POST", "/chats/c2/hold", max_events=1)
        assert second.status_code == 200
        events = await within(read_until(first, ended))
        assert events[-1].status == "cancelled"
        cancelled = await controller_client.delete(f"/resumable/streams/{second.stream_id}")
        assert cancelled.json()["status"] == "cancelled"


# -- Routers with dependencies and guards --


def members_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    if connection.headers.get("x-member") != "yes":
        raise NotAuthorizedException("members only")


async def test_a_router_level_dependency_and_guard_apply(store: StreamStore) -> None:
    @get("/feed")
    @resumable
    async def feed(source: NamedDependency[str]) -> AsyncIterator[str]:
        yield source

    router = Router(
        "/api",
        route_handlers=[feed],
        dependencies={"source": Provide(lambda: "router", sync_to_thread=False)},
        guards=[members_only],
    )
    async with serve(Litestar([router], plugins=[ResumablePlugin(store)])) as client:
        assert (await client.get("/api/feed")).status_code == 401
        response = await read_sse(client, "GET", "/api/feed", headers={"x-member": "yes"})
        assert [e.data for e in response.events[:-1]] == ["router"]
        resumed = await client.get(
            "/api/feed", headers={"Last-Event-ID": response.events[0].id or "", "x-member": "no"}
        )
        assert resumed.status_code == 401  # a resume goes through the route's guards too


def test_a_static_method_fails_at_import_with_what_to_do() -> None:
    with pytest.raises(TypeError, match="not on a staticmethod"):

        class Broken(Controller):
            @get("/x")
            @resumable  # type: ignore[arg-type]
            @staticmethod
            async def x() -> AsyncIterator[str]:
                yield "x"


# -- dependencies with yield --


class Lifecycle:
    """A dependency with ``yield`` that records when it is opened, used and closed, and how."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.closed = asyncio.Event()

    async def provide(self) -> AsyncIterator[Resource]:
        resource = Resource(self.log, "resource")
        self.log.append("open")
        try:
            yield resource
        except Exception as exc:
            self.log.append(f"close with {type(exc).__name__}")
            raise
        else:
            self.log.append("close")
        finally:
            resource.open = False
            self.closed.set()

    def provide_sync(self) -> Iterator[str]:
        self.log.append("open sync")
        try:
            yield "sync"
        finally:
            self.log.append("close sync")


def lifecycle_app(
    store: StreamStore, lifecycle: Lifecycle, proceed: asyncio.Event, **options: Any
) -> Litestar:
    @get("/answer")
    @resumable
    async def answer(
        resource: NamedDependency[Resource], plain: NamedDependency[str], n: int = 2, fail: bool = False
    ) -> AsyncIterator[str]:
        for i in range(n):
            yield resource.use(f"{plain} {i}")
            await proceed.wait()
        if fail:
            raise RuntimeError("the model broke")
        resource.use("save")

    @get("/forever")
    @resumable(max_duration=0.2)
    async def forever(resource: NamedDependency[Resource]) -> AsyncIterator[str]:
        yield resource.use("start")
        await asyncio.Event().wait()

    @get("/stubborn")
    @resumable
    async def stubborn(resource: NamedDependency[Resource]) -> AsyncIterator[str]:
        yield resource.use("start")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            resource.use("swallowed the cancellation")
        # ... and returns as if it were done: the stream must still say why it was stopped.

    return Litestar(
        [answer, forever, stubborn],
        dependencies={
            "resource": Provide(lifecycle.provide),
            "plain": Provide(lifecycle.provide_sync),
        },
        plugins=[ResumablePlugin(store, **options)],
    )


def assert_lived_through(log: list[str], uses: list[str]) -> None:
    """Both dependencies opened (in Litestar's order), were used, then each was closed once."""
    assert sorted(log[:2]) == ["open", "open sync"]
    assert log[2:-2] == uses
    assert sorted(log[-2:]) == ["close", "close sync"]


@pytest.fixture
def lifecycle() -> Lifecycle:
    return Lifecycle()


async def test_a_dependency_stays_open_after_the_client_left_and_closes_once_after_the_end(
    store: StreamStore, lifecycle: Lifecycle
) -> None:
    proceed = asyncio.Event()
    async with serve(lifecycle_app(store, lifecycle, proceed)) as client:
        async with client.stream("GET", "/answer") as response:
            stream_id = response.headers["x-resumable-stream-id"]
            await within(read_until(response, lambda events: len(events) >= 1))
        proceed.set()  # the client is gone; the generation goes on with its dependencies open
        await within(lifecycle.closed.wait())
        replay = await read_sse(client, "GET", f"/resumable/streams/{stream_id}")
    assert [e.data for e in replay.events[:-1]] == ["sync 0", "sync 1"]
    assert replay.terminal is not None
    assert replay.terminal.status == "done"
    assert_lived_through(lifecycle.log, ["use sync 0", "use sync 1", "use save"])


@pytest.mark.parametrize(
    ("path", "status", "closing"),
    [
        ("/answer?fail=true", "error", ["close sync", "close with RuntimeError"]),
        ("/forever", "error", ["close with StreamClosedError"]),  # max_duration
    ],
)
async def test_a_dependency_closes_once_whatever_the_ending(
    store: StreamStore, lifecycle: Lifecycle, path: str, status: str, closing: list[str]
) -> None:
    proceed = asyncio.Event()
    proceed.set()
    async with serve(lifecycle_app(store, lifecycle, proceed)) as client:
        response = await within(read_sse(client, "GET", path))
    assert response.terminal is not None
    assert response.terminal.status == status
    assert lifecycle.log.count("open") == 1
    assert sorted(line for line in lifecycle.log if line.startswith("close")) == sorted(closing)
    if path == "/forever":
        assert response.terminal.json() == {
            "status": "error",
            "message": "the generation passed max_duration (0.2 s)",
        }


async def test_a_cancelled_generation_closes_its_dependencies(
    store: StreamStore, lifecycle: Lifecycle
) -> None:
    proceed = asyncio.Event()
    async with serve(lifecycle_app(store, lifecycle, proceed)) as client:
        async with client.stream("GET", "/answer") as response:
            stream_id = response.headers["x-resumable-stream-id"]
            await within(read_until(response, lambda events: len(events) >= 1))
            assert (await client.delete(f"/resumable/streams/{stream_id}")).status_code == 202
            events = await within(read_until(response, ended))
        await within(lifecycle.closed.wait())
    assert events[-1].status == "cancelled"
    assert "close with StreamClosedError" in lifecycle.log
    assert lifecycle.log.count("open") == 1


async def test_shutdown_interrupts_a_handler_that_swallows_its_cancellation(
    store: StreamStore, lifecycle: Lifecycle
) -> None:
    # Regression: a handler that caught CancelledError and returned was stored as done at shutdown.
    proceed = asyncio.Event()
    app = lifecycle_app(store, lifecycle, proceed, shutdown_grace=0.1)
    async with serve(app) as client, client.stream("GET", "/stubborn") as response:
        stream_id = response.headers["x-resumable-stream-id"]
        await within(read_until(response, lambda events: len(events) >= 1))
    info = await store.info(stream_id)
    assert info is not None
    assert info.status == "interrupted"
    assert "use swallowed the cancellation" in lifecycle.log
    assert lifecycle.log[-1] == "close with StreamClosedError"


async def test_a_resume_closes_its_own_dependencies_at_once(store: StreamStore, lifecycle: Lifecycle) -> None:
    proceed = asyncio.Event()
    proceed.set()
    async with serve(lifecycle_app(store, lifecycle, proceed)) as client:
        first = await read_sse(client, "GET", "/answer")
        lifecycle.log.clear()
        resumed = await read_sse(client, "GET", "/answer", last_event_id=first.events[0].id)
    assert [e.data for e in resumed.events[:-1]] == ["sync 1"]
    assert sorted(lifecycle.log) == sorted(["open", "open sync", "close sync", "close"])


async def test_a_plain_stream_keeps_its_dependencies_open_to_its_end(
    store: StreamStore, lifecycle: Lifecycle
) -> None:
    proceed = asyncio.Event()
    proceed.set()
    app = lifecycle_app(store, lifecycle, proceed, enabled=False)
    async with serve(app) as client:
        response = await client.get("/answer")
        await within(lifecycle.closed.wait())
    assert [e.data for e in parse_sse(response.text)] == ["sync 0", "sync 1"]
    assert_lived_through(lifecycle.log, ["use sync 0", "use sync 1", "use save"])
