"""End to end: real uvicorn processes running ``_support/app.py``, real HTTP, and (mostly) a real Redis.

Each test starts the servers it needs (they start in about half a second) and reads their streams with
httpx. Nothing here sleeps to synchronise: tests wait for what they can observe (the Nth event, a
heartbeat, the terminal event), and every wait is bounded.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from _support.asgi import within
from _support.proxy import DroppingProxy
from _support.reading import check_stream, numbers, open_sse
from _support.stores import need_redis

from litestar_resumable.client import ReceivedEvent, stream_events
from litestar_resumable.testing import SSEEvent, parse_sse

pytestmark = pytest.mark.e2e

TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@pytest.fixture(params=["memory", "redis"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "memory":
        return {}
    need_redis()
    from _support.stores import REDIS_URL  # noqa: PLC0415

    return {"E2E_REDIS_URL": REDIS_URL, "E2E_KEY_PREFIX": request.getfixturevalue("redis_prefix")}


# -- the tests --


async def test_resume_after_a_disconnect(store_env, launch):
    (server,) = launch(store_env)
    route = f"{server.url}/count?n=50&interval=0.02"
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        async with open_sse(client, route) as first:
            stream_id = first.stream_id
            part1 = await within(first.take(10))
        # The connection is gone; the generation goes on. Resume on the same URL with Last-Event-ID.
        async with open_sse(client, route, last_event_id=part1[-1].id) as second:
            assert second.stream_id == stream_id  # the same generation: the handler was not called again
            part2 = await within(second.take(15))
        # And through the resume route, with the position as a query parameter.
        resume_url = f"{server.url}/resumable/streams/{stream_id}"
        async with open_sse(client, f"{resume_url}?last_event_id={part2[-1].id}") as third:
            part3 = await within(third.rest())
        check_stream(part1 + part2 + part3, stream_id, numbers(50))

        # Resuming after the terminal event: nothing left.
        for url in (route, resume_url):
            response = await within(client.get(url, headers={"Last-Event-ID": part3[-1].id}))
            assert response.status_code == 204


async def test_two_servers_share_streams_and_cancel_anywhere(shared):
    a, b = shared({}, {})
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        path = "/count?n=40&interval=0.02"
        async with open_sse(client, a.url + path) as on_a:
            stream_id = on_a.stream_id
            head = await within(on_a.take(5))
        async with open_sse(client, b.url + path, last_event_id=head[-1].id) as on_b:
            assert on_b.stream_id == stream_id
            tail = await within(on_b.rest())
        check_stream(head + tail, stream_id, numbers(40))

        # A generation produced on A, followed on both servers, cancelled through B.
        async with open_sse(client, f"{a.url}/hold?n=3") as producer_connection:
            stream_id = producer_connection.stream_id
            held = await within(producer_connection.take(3))
            assert [e.data for e in held] == numbers(3)
            async with (
                open_sse(client, f"{b.url}/resumable/streams/{stream_id}") as follower_b,
                open_sse(
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


async def test_a_killed_producer_leaves_its_stream_interrupted(shared):
    a, b = shared({"E2E_LEASE": "1"}, {"E2E_LEASE": "1"})
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as client,
        open_sse(client, f"{a.url}/hold?n=3") as on_a,
    ):
        stream_id = on_a.stream_id
        assert [e.data for e in await within(on_a.take(3))] == numbers(3)
        async with open_sse(client, f"{b.url}/resumable/streams/{stream_id}") as on_b:
            replayed = await within(on_b.take(3))
            a.kill()
            rest = await within(on_b.rest(), 15)
    check_stream(replayed + rest, stream_id, numbers(3), status="interrupted")


async def test_a_failing_handler_ends_with_error_and_no_details(shared):
    (server,) = shared({})
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        response = await within(client.get(f"{server.url}/boom?n=2"))
    assert response.status_code == 200
    body = response.text
    check_stream(parse_sse(body), response.headers["x-resumable-stream-id"], numbers(2), status="error")
    assert "secret detail" not in body
    assert "Traceback" not in body


async def test_heartbeats_are_comments_without_ids(shared):
    (server,) = shared({"E2E_HEARTBEAT": "0.2"})
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as client,
        open_sse(client, f"{server.url}/hold?n=1") as reader,
    ):
        stream_id = reader.stream_id
        first = await within(reader.take(1))
        await within(reader.comments(2), 5)
        idle = reader.text[reader.text.index("data: 0\n\n") + len("data: 0\n\n") :]
        assert idle == ": ping\n\n: ping\n\n"  # comment lines only: no id, no data

        response = await within(client.delete(f"{server.url}/resumable/streams/{stream_id}"))
        assert response.status_code == 202
        rest = await within(reader.rest())
    check_stream(first + rest, stream_id, ["0"], status="cancelled")


async def test_many_viewers_each_get_the_whole_stream(shared):
    (server,) = shared({})
    viewers = 50
    limits = httpx.Limits(max_connections=viewers + 10)
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=limits) as client:
        async with open_sse(client, f"{server.url}/count?n=200&interval=0.005") as starter:
            stream_id = starter.stream_id
            await within(starter.take(1))

        async def view() -> list[SSEEvent]:
            async with open_sse(client, f"{server.url}/resumable/streams/{stream_id}") as reader:
                return await reader.rest()

        seen = await within(asyncio.gather(*(view() for _ in range(viewers))), 30)
    for events in seen:
        check_stream(events, stream_id, numbers(200))


async def test_the_client_resumes_across_a_dropped_connection(shared):
    (server,) = shared({})
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
