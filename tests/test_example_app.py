"""The example app as a person uses it: a real browser (Debian's Chromium, driven by Playwright) reloading,
losing its connection and opening a second tab; the OpenAI path through the real SDK; Redis mode across
two processes; worker mode (answers written by ``python -m example_app.worker``, a SAQ worker) with its web
process killed mid-answer; and the README's first command."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _support.asgi import serve, within
from _support.proxy import DroppingProxy
from _support.reading import Reader, follow_to_end, open_sse
from _support.servers import Server, free_port, running
from _support.stores import REDIS_URL
from litestar import Litestar, post
from litestar.response import Stream
from redis import Redis
from saq.queue.redis import RedisQueue

from example_app.app import create_app, model_from_env
from example_app.fake_model import answer_words
from litestar_resumable import MemoryStreamStore
from litestar_resumable.client import stream_events
from litestar_resumable.testing import SSEDecoder, SSEEvent

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000


PROMPT = "Why do LLM streams need to be resumable?"  # the page's default question


class GatedModel:
    """The fake model's answer (and a few awkward characters), stopping halfway until the test says go."""

    def __init__(self) -> None:
        self.words = [*answer_words(PROMPT), "ünïcødé ✓ ≠ ", "and\nnew\r\nlines"]
        self.half = len(self.words) // 2
        self.gate = asyncio.Event()
        self.first_half_sent = asyncio.Event()

    @property
    def text(self) -> str:
        return "".join(self.words)

    async def __call__(self, prompt: str) -> AsyncIterator[dict[str, str]]:  # noqa: ARG002 - a model's signature
        for index, word in enumerate(self.words):
            if index == self.half:
                self.first_half_sent.set()
                await self.gate.wait()
            yield {"text": word}
            await asyncio.sleep(0.002)


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if CHROMIUM is None:
        if os.environ.get("RESUMABLE_REQUIRE_BROWSER") == "1":
            pytest.fail("RESUMABLE_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("no chromium on PATH (apt-get install chromium)")
    from playwright.async_api import async_playwright  # noqa: PLC0415

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


async def replayed_text(http: httpx.AsyncClient, page: Any, chat: str) -> str:
    """The whole answer as the store has it, read through the resume route."""
    stream_id = await page.evaluate(f"localStorage.getItem('litestar-resumable:last-stream:{chat}')")
    events = [e async for e in stream_events(http, "GET", f"/resumable/streams/{stream_id}")]
    assert events[-1].json() == {"status": "done"}
    return "".join(e.json().get("text", "") for e in events[:-1])


async def shows(page: Any, text: str) -> None:
    await page.wait_for_function(
        "t => document.getElementById('answer').textContent.includes(t)", arg=text, timeout=WAIT_MS
    )


async def status_is(page: Any, state: str) -> None:
    await page.wait_for_function(
        "s => document.getElementById('status').textContent === s", arg=state, timeout=WAIT_MS
    )


async def test_a_reload_mid_answer_continues_exactly(browser: Any, tmp_path: Path) -> None:
    model = GatedModel()
    async with serve(create_app(store=MemoryStreamStore(), model=model, retry=200)) as http:
        page = await browser.new_page(viewport={"width": 900, "height": 640})
        await page.goto(f"{http.base_url}/?chat=reload")
        await page.click("#send")
        await within(model.first_half_sent.wait())
        await shows(page, model.words[model.half - 1])
        await status_is(page, "streaming")
        await page.screenshot(path=tmp_path / "example-mid-stream.png")
        await page.reload()
        await shows(page, model.words[model.half - 1])  # replayed from the store
        await status_is(page, "streaming")
        assert await page.text_content("#answer") == "".join(model.words[: model.half])
        model.gate.set()
        await status_is(page, "done")
        await page.screenshot(path=tmp_path / "example-after-reload.png", full_page=True)
        assert await page.text_content("#answer") == model.text
        assert await replayed_text(http, page, "reload") == model.text
    if os.environ.get("RESUMABLE_UPDATE_SCREENSHOTS") == "1":
        for name in ("example-mid-stream.png", "example-after-reload.png"):
            shutil.copy(tmp_path / name, ROOT / "docs" / "images" / name)


async def test_eventsource_resumes_after_the_connection_drops(browser: Any) -> None:
    model = GatedModel()
    app = create_app(store=MemoryStreamStore(), model=model, retry=200)
    async with serve(app) as http, DroppingProxy(int(str(http.base_url).rsplit(":", 1)[1])) as proxy:
        page = await browser.new_page()
        await page.goto(f"{proxy.url}/?chat=drop")
        await page.click("#send")
        await within(model.first_half_sent.wait())
        await shows(page, model.words[model.half - 1])
        connections = proxy.connections
        proxy.drop()  # the network goes; EventSource retries after 200 ms with Last-Event-ID
        await within(_until(lambda: proxy.connections > connections))
        model.gate.set()
        await status_is(page, "done")
        assert await page.text_content("#answer") == model.text  # no duplicate, nothing missing
        assert await replayed_text(http, page, "drop") == model.text


async def test_a_second_tab_watches_the_same_answer_live(browser: Any) -> None:
    model = GatedModel()
    async with serve(create_app(store=MemoryStreamStore(), model=model, retry=200)) as http:
        first = await browser.new_page()
        await first.goto(f"{http.base_url}/?chat=shared")
        await first.click("#send")
        await within(model.first_half_sent.wait())
        second = await browser.new_page()
        await second.goto(f"{http.base_url}/?chat=shared")
        await shows(second, model.words[model.half - 1])
        model.gate.set()
        await status_is(first, "done")
        await status_is(second, "done")
        assert await first.text_content("#answer") == model.text
        assert await second.text_content("#answer") == model.text


async def test_stop_cancels_the_answer(browser: Any) -> None:
    model = GatedModel()
    async with serve(create_app(store=MemoryStreamStore(), model=model, retry=200)) as http:
        page = await browser.new_page()
        await page.goto(f"{http.base_url}/?chat=stop")
        await page.click("#send")
        await within(model.first_half_sent.wait())
        await shows(page, model.words[model.half - 1])
        await page.click("#stop")
        await status_is(page, "stopped")
        assert await page.text_content("#answer") == "".join(model.words[: model.half])


async def _until(condition: Callable[[], bool]) -> None:
    """Poll a condition that no event announces (a count kept by the proxy); bounded by the caller."""
    while not condition():
        await asyncio.sleep(0.01)


# -- the OpenAI path, through the real SDK, against an OpenAI-compatible server on loopback --


class FakeOpenAI:
    """Serves /v1/chat/completions as OpenAI streams it: chat.completion.chunk events, then [DONE]."""

    def __init__(self, words: list[str], *, hold_after: int | None = None) -> None:
        self.words = words
        self.hold_after = hold_after
        self.requests: list[dict[str, Any]] = []
        self.closed = asyncio.Event()

        @post("/v1/chat/completions")
        async def completions(data: dict[str, Any]) -> Stream:
            self.requests.append(data)
            return Stream(self._chunks(data["model"]), media_type="text/event-stream")

        self.app = Litestar([completions])

    async def _chunks(self, model: str) -> AsyncIterator[str]:
        try:
            for index, word in enumerate(self.words):
                if index == self.hold_after:
                    await asyncio.Event().wait()  # a model that goes on thinking until cancelled
                delta = {"role": "assistant", "content": word} if index == 0 else {"content": word}
                yield _chunk(model, delta, None)
            yield _chunk(model, {}, "stop")
            yield "data: [DONE]\n\n"
        finally:
            self.closed.set()


def _chunk(model: str, delta: dict[str, str], finish_reason: str | None) -> str:
    body = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(body)}\n\n"


async def test_the_openai_path_streams_text_deltas_through_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOpenAI(["Hel", "lo, ", "wörld", "!\n", "Bye."])
    async with serve(fake.app) as upstream:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{upstream.base_url}/v1")
        monkeypatch.setenv("OPENAI_MODEL", "test-model")
        async with serve(create_app(store=MemoryStreamStore(), model=model_from_env())) as http:
            params = {"prompt": "Say hello", "chat_id": "openai"}
            events = [e async for e in stream_events(http, "GET", "/api/generate", params=params)]
    items = [e.json() for e in events[:-1]]
    assert "".join(i.get("text", "") for i in items) == "Hello, wörld!\nBye."
    assert items[-1] == {"finish_reason": "stop"}
    assert events[-1].json() == {"status": "done"}
    assert fake.requests[0]["model"] == "test-model"
    assert fake.requests[0]["messages"] == [{"role": "user", "content": "Say hello"}]
    assert fake.requests[0]["stream"] is True


async def test_stopping_an_openai_answer_closes_the_upstream_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOpenAI(["one ", "two ", "three "], hold_after=2)
    async with serve(fake.app) as upstream:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{upstream.base_url}/v1")
        async with (
            serve(create_app(store=MemoryStreamStore(), model=model_from_env())) as http,
            http.stream("GET", "/api/generate", params={"prompt": "p", "chat_id": "c"}) as response,
        ):
            stream_id = response.headers["x-resumable-stream-id"]
            lines = response.aiter_lines()
            while "two" not in await within(anext(lines)):
                pass
            assert (await http.delete(f"/resumable/streams/{stream_id}")).status_code == 202
            await within(fake.closed.wait())  # the SDK's HTTP stream was closed: no more tokens paid for


# -- Redis mode: two example-app processes sharing one Redis --


async def test_two_example_processes_share_chats_through_redis(redis_prefix: str) -> None:
    env = {"REDIS_URL": REDIS_URL, "REDIS_KEY_PREFIX": redis_prefix, "FAKE_TOKENS_PER_SECOND": "400"}
    with running(env, env, app="example_app.app:app", app_dir=ROOT, ready_path="/") as (a, b):
        async with httpx.AsyncClient(timeout=10) as http:
            params = {"prompt": "two workers", "chat_id": "shared-chat"}
            first: list[Any] = []
            async with http.stream("GET", f"{a.url}/api/generate", params=params) as response:
                stream_id = response.headers["x-resumable-stream-id"]
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        first.append(json.loads(line[6:]))
                    if len(first) == 5:
                        break
            active = (await http.get(f"{b.url}/api/chats/shared-chat/active")).json()
            rest = [
                e
                async for e in stream_events(
                    http, "GET", f"{b.url}/api/generate", params=params, last_event_id=f"{stream_id}.5"
                )
            ]
            whole = [e async for e in stream_events(http, "GET", f"{a.url}/resumable/streams/{stream_id}")]
    assert active in ({"stream_id": stream_id}, {"stream_id": None})  # None only if it already finished
    assert rest[-1].json() == {"status": "done"}
    texts = [item["text"] for item in first] + [e.json().get("text", "") for e in rest[:-1]]
    assert "".join(texts) == "".join(e.json().get("text", "") for e in whole[:-1])
    assert "".join(texts).startswith('You asked: "two workers".')


def test_the_readmes_first_command_serves_the_page(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "OPENAI_API_KEY")}
    env["PORT"] = str(port)
    log = tmp_path / "example.log"
    with (
        log.open("wb") as output,
        subprocess.Popen(
            [sys.executable, "-m", "example_app"], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        ) as process,
    ):
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    page = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"python -m example_app did not serve:\n{log.read_text()}")
                    time.sleep(0.05)
            assert page.status_code == 200
            assert "EventSource" in page.text
            # The first curl a newcomer types, with no chat id: a one-off answer that streams.
            url = f"http://127.0.0.1:{port}/api/generate?prompt=hi"
            with httpx.stream("GET", url, timeout=10) as answer:
                assert answer.status_code == 200
                assert answer.headers["content-type"].startswith("text/event-stream")
                decoder = SSEDecoder()
                events: list[SSEEvent] = []
                for text in answer.iter_text():
                    events.extend(decoder.feed(text))
                    if len(events) >= 2:
                        break
            assert all("text" in event.json() for event in events)
        finally:
            process.terminate()
            process.wait(10)


# -- worker mode: the web app opens each answer's stream; a SAQ worker (example_app/worker.py) writes it --

WORKER_READY = "taking answers from the SAQ queue"  # what example_app/worker.py logs once it takes jobs


class ExampleWorker:
    """``python -m example_app.worker`` as a process of its own, ready once its log says so."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"} | env
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log.open("ab") as output:  # the child keeps a descriptor of its own
            self.process = subprocess.Popen(
                [sys.executable, "-m", "example_app.worker"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + 20
        while self.output().count(WORKER_READY) < self.starts:
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"python -m example_app.worker did not say {WORKER_READY!r}:\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL ends a stopped (SIGSTOP) process too
            self.process.wait(10)


@dataclasses.dataclass
class WorkerMode:
    web: Server
    worker: ExampleWorker
    queue: str


@pytest.fixture
def worker_mode(redis_prefix: str, tmp_path: Path) -> Iterator[WorkerMode]:
    """``python -m example_app.worker`` and the web app with ``GENERATE_IN=worker``, as real processes on
    the real Redis, with a key prefix and a SAQ queue of this test's own."""
    queue = f"{redis_prefix}-answers"
    env = {
        "GENERATE_IN": "worker",
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": redis_prefix,
        "SAQ_QUEUE": queue,
        "FAKE_TOKENS_PER_SECOND": "100",
        "WORKER_SHUTDOWN_GRACE": "0",  # a SIGTERM cancels running answers at once
    }
    worker = ExampleWorker(env, tmp_path / "worker.log")
    try:
        worker.start()
        with running(env, app="example_app.app:app", app_dir=ROOT, ready_path="/") as (web,):
            yield WorkerMode(web, worker, queue)
    finally:
        worker.kill()  # idle by now; a SIGKILL is quicker than SAQ's own stop
        _delete_saq_keys(queue)


def _delete_saq_keys(queue: str) -> None:
    client = Redis.from_url(REDIS_URL)
    try:
        keys = list(
            client.scan_iter(match=f"saq:*{queue}*", count=1000)
        )  # saq:<queue>:..., saq:job:<queue>:...
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@contextlib.contextmanager
def frozen(worker: ExampleWorker) -> Iterator[None]:
    """SIGSTOP, then SIGCONT: the worker cannot finish the answer (or notice anything) meanwhile."""
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(worker.pid, signal.SIGCONT)


async def finished_job(queue_name: str, stream_id: str) -> Any:
    """The SAQ job that wrote ``stream_id`` (its key), once it has finished."""
    queue = RedisQueue.from_url(REDIS_URL, name=queue_name)
    try:
        job = await queue.job(stream_id)
        assert job is not None, f"no SAQ job for stream {stream_id}"
        await within(job.refresh(until_complete=10), 15)
        return job
    finally:
        await queue.disconnect()


def _restart(server: Server) -> None:
    server.stop()  # closes the dead process's log
    server.start()
    server.wait_ready()


def ui_chunks(events: list[SSEEvent]) -> list[Any]:
    return [event.json() for event in events if event.id is not None]


def ai_sdk_chat(chat_id: str) -> dict[str, Any]:
    """The body of the AI SDK's POST for a new question in chat ``chat_id``."""
    return {
        "id": chat_id,
        "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": PROMPT}]}],
        "trigger": "submit-message",
    }


async def test_worker_mode_an_answer_outlives_the_web_process_that_opened_it(worker_mode: WorkerMode) -> None:
    """The AI SDK's POST /api/chat in worker mode: the web process is killed mid-answer and started again;
    the client resumes on the new one and gets the rest of the answer, nothing lost and nothing twice,
    written once by the worker's job."""
    web, worker = worker_mode.web, worker_mode.worker
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream("POST", f"{web.url}/api/chat", json=ai_sdk_chat("worker-chat")) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
            stream_id = response.headers["x-resumable-stream-id"]
            reader = Reader(response)
            try:
                await within(reader.take(5))
                with frozen(worker):  # the answer is certainly unfinished while the web process is gone
                    web.kill()
                    await within(reader.rest())  # what was in flight, then the connection's end
            finally:
                with contextlib.suppress(httpx.TransportError):
                    await response.aclose()
        assert reader.ended is not None
        assert reader.ended.startswith(("reset", "closed")), reader.ended
        # The worker writes on while no web process runs; a new one serves the rest.
        await within(asyncio.to_thread(_restart, web), 40)
        resume = f"{web.url}/resumable/streams/{stream_id}"
        after = await within(follow_to_end(http, resume, last_event_id=reader.events[-1].id), 30)
        replay = await within(follow_to_end(http, resume), 30)

    events = [*reader.events, *after.events]
    ided = [event for event in events if event.id is not None]
    assert [event.position for event in ided] == list(range(1, len(ided) + 1))  # no gap, no duplicate
    assert {event.stream_id for event in ided} == {stream_id}
    chunks = ui_chunks(events)
    assert chunks[0] == {"type": "start", "messageId": f"msg-{stream_id}"}
    assert chunks[-2:] == [{"type": "text-end", "id": "text-1"}, {"type": "finish"}]
    assert events[-1].data == "[DONE]"
    text = "".join(chunk["delta"] for chunk in chunks if chunk["type"] == "text-delta")
    assert text == "".join(answer_words(PROMPT))  # the fake model's whole answer
    assert any(chunk["type"] == "text-delta" for chunk in ui_chunks(after.events))  # it was mid-answer
    assert ui_chunks(replay.events) == chunks  # and the store holds exactly that
    job = await finished_job(worker_mode.queue, stream_id)
    assert (job.status, job.result, job.attempts) == ("complete", "written", 1)


async def test_worker_mode_the_pages_route_resumes_and_stop_reaches_the_job(worker_mode: WorkerMode) -> None:
    """The page's GET /api/generate in worker mode: EventSource's reconnect to the same URL with
    Last-Event-ID reads on exactly; the page's Stop (DELETE on the plugin's route) ends the stream
    ``cancelled`` and reaches the job, which stops writing."""
    web, worker = worker_mode.web, worker_mode.worker
    url = str(httpx.URL(f"{web.url}/api/generate", params={"prompt": PROMPT, "chat_id": "page-chat"}))
    async with httpx.AsyncClient(timeout=10) as http:
        async with open_sse(http, url) as first:
            await within(first.take(3))
            stream_id = first.stream_id
        async with open_sse(http, url, last_event_id=first.events[-1].id) as again:
            await within(again.take(3))
            with frozen(worker):  # the answer cannot end before the Stop
                stopped = await within(http.delete(f"{web.url}/resumable/streams/{stream_id}"))
            assert stopped.status_code == 202, stopped.text
            await within(again.rest())
        active = (await within(http.get(f"{web.url}/api/chats/page-chat/active"))).json()

    events = [*first.events, *again.events]
    assert [event.position for event in events] == list(range(1, len(events) + 1))
    assert events[-1].is_terminal
    assert events[-1].status == "cancelled"
    texts = [event.json()["text"] for event in events[:-1]]
    assert texts == answer_words(PROMPT)[: len(texts)]
    assert active == {"stream_id": None}
    job = await finished_job(worker_mode.queue, stream_id)
    assert (job.status, job.result) == ("complete", "cancelled")


async def test_worker_mode_a_stopped_worker_ends_its_answer_interrupted_and_a_retry_writes_nothing(
    worker_mode: WorkerMode,
) -> None:
    """SIGTERM to the worker mid-answer (``WORKER_SHUTDOWN_GRACE=0``): SAQ cancels the job, the stream ends
    ``interrupted`` and its reader hears it at once (an ``error`` chunk in the AI SDK's terms). SAQ puts
    the cancelled job back in its queue; the next worker runs it again, finds the stream ended, and
    writes nothing into it."""
    web, worker = worker_mode.web, worker_mode.worker
    assert worker.process is not None
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream("POST", f"{web.url}/api/chat", json=ai_sdk_chat("stopped-chat")) as response:
            stream_id = response.headers["x-resumable-stream-id"]
            reader = Reader(response)
            await within(reader.take(5))
            with frozen(worker):  # the answer cannot end before the worker hears the SIGTERM
                worker.process.send_signal(signal.SIGTERM)
            await within(reader.rest())
        await within(asyncio.to_thread(worker.process.wait, 15), 20)
        worker.start()  # SAQ hands the cancelled job to the next worker
        job = await finished_job(worker_mode.queue, stream_id)
        replay = await within(follow_to_end(http, f"{web.url}/resumable/streams/{stream_id}"))

    ided = [event for event in reader.events if event.id is not None]
    assert [event.position for event in ided] == list(range(1, len(ided) + 1))
    chunks = ui_chunks(reader.events)
    assert {"type": "finish"} not in chunks
    assert chunks[-1] == {
        "type": "error",
        "errorText": "The answer was interrupted: the server producing it stopped.",
    }
    assert reader.events[-1].data == "[DONE]"
    assert ui_chunks(replay.events) == chunks  # the second attempt added nothing
    assert (job.status, job.result, job.attempts) == ("complete", "nothing to write", 2)


def test_worker_mode_without_redis_says_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("GENERATE_IN", "worker")
    with pytest.raises(RuntimeError, match="GENERATE_IN=worker needs REDIS_URL"):
        create_app()
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | {"PORT": str(free_port())}
    for command in ("example_app", "example_app.worker"):  # the web app (its import fails) and the worker
        done = subprocess.run(
            [sys.executable, "-m", command], cwd=ROOT, env=env, capture_output=True, timeout=30, check=False
        )
        assert done.returncode != 0, command
        assert b"GENERATE_IN=worker needs REDIS_URL" in done.stderr, (command, done.stderr)
    monkeypatch.setenv("GENERATE_IN", "elsewhere")
    with pytest.raises(RuntimeError, match="GENERATE_IN must be 'web' or 'worker'"):
        create_app()
