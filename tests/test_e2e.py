"""End to end: real uvicorn processes running ``e2e_app.py``, real HTTP, and (mostly) a real Redis.

Each test starts the servers it needs (they start in about half a second) and reads their streams with
httpx. Nothing here sleeps to synchronise: tests wait for what they can observe (the Nth event, a
heartbeat, the terminal event), and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import httpx
import pytest
from conftest import REDIS_URL, need_redis, within
from proxy import DroppingProxy
from servers import Server, running
from sse import Event, parse_block

from litestar_resumable.client import ReceivedEvent, stream_events

if TYPE_CHECKING:
    pass

pytestmark = pytest.mark.e2e

TIMEOUT = httpx.Timeout(10.0, connect=5.0)

# -- reading SSE as a browser would, keeping the raw blocks for the tests that look at the wire --


def parse_body(body: str) -> list[Event]:
    blocks = (parse_block(block.split("\n")) for block in body.split("\n\n"))
    return [event for event in blocks if event is not None]


class Reader:
    """One SSE response, read block by block."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.blocks: list[list[str]] = []

    @property
    def stream_id(self) -> str:
        return self.response.headers["x-resumable-stream-id"]

    async def next_block(self) -> list[str] | None:
        """The next raw block, or None once the response has ended."""
        block: list[str] = []
        while True:
            try:
                line = await anext(self._lines)
            except StopAsyncIteration:
                if block:
                    self.blocks.append(block)
                return block or None
            if line:
                block.append(line)
            elif block:
                self.blocks.append(block)
                return block

    async def next_event(self) -> Event:
        while (block := await self.next_block()) is not None:
            event = parse_block(block)
            if event is not None:
                return event
        raise AssertionError("the response ended where an event was expected")

    async def take(self, n: int) -> list[Event]:
        return [await self.next_event() for _ in range(n)]

    async def rest(self) -> list[Event]:
        """Every remaining event, up to the end of the response."""
        events = []
        while (block := await self.next_block()) is not None:
            event = parse_block(block)
            if event is not None:
                events.append(event)
        return events

    async def aclose(self) -> None:
        await self._lines.aclose()


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, url: str, *, last_event_id: str | None = None
) -> AsyncIterator[Reader]:
    """GET an SSE stream (bounded by the client's timeouts) and read it; the connection closes at exit."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, (response.status_code, await response.aread())
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = Reader(response)
        try:
            yield reader
        finally:
            await reader.aclose()


def numbers(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def check_complete(events: list[Event], stream_id: str, data: list[str], status: str = "done") -> None:
    """``events`` are a whole stream: ``data`` at positions 1.., then exactly one terminal event."""
    assert [e.data for e in events[:-1]] == data
    assert [e.position for e in events] == list(range(1, len(data) + 2))
    assert {e.stream_id for e in events} == {stream_id}
    assert [e.is_terminal for e in events] == [False] * len(data) + [True]
    assert events[-1].status == status


# -- servers --


def redis_env(prefix: str, settings: Mapping[str, str]) -> dict[str, str]:
    need_redis()
    return {"E2E_REDIS_URL": REDIS_URL, "E2E_KEY_PREFIX": prefix, **settings}


@pytest.fixture
def launch() -> Iterator[Callable[..., list[Server]]]:
    """Start servers (one per environment) that run until the test ends."""
    with contextlib.ExitStack() as stack:
        yield lambda *envs: stack.enter_context(running(*envs))


@pytest.fixture
def redis_servers(redis_prefix: str, launch: Callable[..., list[Server]]) -> Callable[..., list[Server]]:
    """Start servers sharing this test's Redis key prefix, one per mapping of extra settings.

    They stop before the prefix's keys are deleted (fixtures end in reverse order).
    """
    return lambda *settings: launch(*(redis_env(redis_prefix, s) for s in settings))


@pytest.fixture(params=["memory", "redis"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "memory":
        return {}
    return redis_env(request.getfixturevalue("redis_prefix"), {})


# -- the tests --


async def test_resume_after_a_disconnect(store_env, launch):
    (server,) = launch(store_env)
    route = f"{server.url}/count?n=50&interval=0.02"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        async with open_stream(client, route) as first:
            stream_id = first.stream_id
            part1 = await within(first.take(10))
        # The connection is gone; the generation goes on. Resume on the same URL with Last-Event-ID.
        async with open_stream(client, route, last_event_id=part1[-1].id) as second:
            assert second.stream_id == stream_id  # the same generation: the handler was not called again
            part2 = await within(second.take(15))
        # And through the resume route, with the position as a query parameter.
        resume_url = f"{server.url}/resumable/streams/{stream_id}"
        async with open_stream(client, f"{resume_url}?last_event_id={part2[-1].id}") as third:
            part3 = await within(third.rest())
        check_complete(part1 + part2 + part3, stream_id, numbers(50))

        # Resuming after the terminal event: nothing left.
        for url in (route, resume_url):
            response = await within(client.get(url, headers={"Last-Event-ID": part3[-1].id}))
            assert response.status_code == 204


async def test_two_servers_share_streams_and_cancel_anywhere(redis_servers):
    a, b = redis_servers({}, {})
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        path = "/count?n=40&interval=0.02"
        async with open_stream(client, a.url + path) as on_a:
            stream_id = on_a.stream_id
            head = await within(on_a.take(5))
        async with open_stream(client, b.url + path, last_event_id=head[-1].id) as on_b:
            assert on_b.stream_id == stream_id
            tail = await within(on_b.rest())
        check_complete(head + tail, stream_id, numbers(40))

        # A generation produced on A, followed on both servers, cancelled through B.
        async with open_stream(client, f"{a.url}/hold?n=3") as producer_connection:
            stream_id = producer_connection.stream_id
            held = await within(producer_connection.take(3))
            assert [e.data for e in held] == numbers(3)
            async with (
                open_stream(client, f"{b.url}/resumable/streams/{stream_id}") as follower_b,
                open_stream(
                    client, f"{a.url}/resumable/streams/{stream_id}", last_event_id=held[0].id
                ) as follower_a,
            ):
                assert [e.data for e in await within(follower_b.take(3))] == numbers(3)
                assert [e.data for e in await within(follower_a.take(2))] == ["1", "2"]
                response = await within(client.delete(f"{b.url}/resumable/streams/{stream_id}"))
                assert response.status_code == 202
                assert response.json()["status"] == "cancelled"
                for reader in (follower_b, follower_a, producer_connection):
                    rest = await within(reader.rest())
                    assert [(e.position, e.status) for e in rest] == [(4, "cancelled")]
        for server in (a, b):
            response = await within(
                client.get(f"{server.url}/hold", headers={"Last-Event-ID": f"{stream_id}.4"})
            )
            assert response.status_code == 204


async def test_a_killed_producer_leaves_its_stream_interrupted(redis_servers):
    a, b = redis_servers({"E2E_LEASE": "1"}, {"E2E_LEASE": "1"})
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as client,
        open_stream(client, f"{a.url}/hold?n=3") as on_a,
    ):
        stream_id = on_a.stream_id
        assert [e.data for e in await within(on_a.take(3))] == numbers(3)
        async with open_stream(client, f"{b.url}/resumable/streams/{stream_id}") as on_b:
            replayed = await within(on_b.take(3))
            a.kill()
            rest = await within(on_b.rest(), 15)
    check_complete(replayed + rest, stream_id, numbers(3), status="interrupted")


async def test_a_failing_handler_ends_with_error_and_no_details(redis_servers):
    (server,) = redis_servers({})
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await within(client.get(f"{server.url}/boom?n=2"))
    assert response.status_code == 200
    body = response.text
    check_complete(parse_body(body), response.headers["x-resumable-stream-id"], numbers(2), status="error")
    assert "secret detail" not in body
    assert "Traceback" not in body


async def test_heartbeats_are_comments_without_ids(redis_servers):
    (server,) = redis_servers({"E2E_HEARTBEAT": "0.2"})
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as client,
        open_stream(client, f"{server.url}/hold?n=1") as reader,
    ):
        stream_id = reader.stream_id
        first = await within(reader.take(1))
        pings: list[list[str]] = []

        async def two_idle_blocks() -> None:
            while len(pings) < 2:
                block = await reader.next_block()
                assert block is not None, "the stream ended while idle"
                pings.append(block)

        await within(two_idle_blocks(), 5)
        assert pings == [[": ping"], [": ping"]]  # comment lines only: no id, no data
        assert not any(line.startswith("id:") for block in pings for line in block)

        response = await within(client.delete(f"{server.url}/resumable/streams/{stream_id}"))
        assert response.status_code == 202
        rest = await within(reader.rest())
    check_complete(first + rest, stream_id, ["0"], status="cancelled")


async def test_many_viewers_each_get_the_whole_stream(redis_servers):
    (server,) = redis_servers({})
    viewers = 50
    limits = httpx.Limits(max_connections=viewers + 10)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        async with open_stream(client, f"{server.url}/count?n=200&interval=0.005") as starter:
            stream_id = starter.stream_id
            await within(starter.take(1))

        async def view() -> list[Event]:
            async with open_stream(client, f"{server.url}/resumable/streams/{stream_id}") as reader:
                return await reader.rest()

        seen = await within(asyncio.gather(*(view() for _ in range(viewers))), 30)
    for events in seen:
        check_complete(events, stream_id, numbers(200))


async def test_the_client_resumes_across_a_dropped_connection(redis_servers):
    (server,) = redis_servers({})
    received: list[ReceivedEvent] = []
    async with (
        DroppingProxy(server.port) as proxy,
        httpx.AsyncClient(base_url=proxy.url, timeout=TIMEOUT) as http,
    ):

        async def consume() -> None:
            events = stream_events(http, "GET", "/count", params={"n": 50, "interval": 0.02}, backoff=0.05)
            async for event in events:
                received.append(event)
                if len(received) == 10:
                    proxy.drop()

        await within(consume(), 20)
    assert proxy.connections >= 2, "the connection was never dropped and resumed"
    assert [e.data for e in received[:-1]] == numbers(50)
    assert [int(e.id.rpartition(".")[2]) for e in received] == list(range(1, 52))
    assert len({e.id.rpartition(".")[0] for e in received}) == 1
    assert received[-1].is_terminal
    assert received[-1].json() == {"status": "done"}
