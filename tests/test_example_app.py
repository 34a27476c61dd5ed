"""The example app as a person uses it: a real browser (Debian's Chromium, driven by Playwright) reloading,
losing its connection and opening a second tab; the OpenAI path through the real SDK; Redis mode across
two processes; and the README's first command."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from _support.asgi import serve, within
from _support.proxy import DroppingProxy
from _support.servers import free_port, running
from _support.stores import REDIS_URL
from litestar import Litestar, post
from litestar.response import Stream

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
