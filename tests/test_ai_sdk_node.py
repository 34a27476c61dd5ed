"""The Vercel AI SDK's own chat client, in Node, against the AI SDK routes of the example app and the docs.

``tests/node/ai_sdk_client.mjs`` uses ``DefaultChatTransport`` and ``readUIMessageStream`` from ``ai`` 5.x
(pinned in ``tests/node/package.json``): the transport ``useChat({ resume: true })`` uses in a browser, the
same validation of every chunk against the SDK's schema, and the same code building UI messages from the
chunks. The tests run it as a subprocess against the app on a real uvicorn server, with the memory store
and with a real Redis, and hand-shake with it over its stdout: no sleeps, every wait bounded.

Node is optional: without ``node`` on PATH the tests skip, unless ``RESUMABLE_REQUIRE_NODE=1``. The SDK is
installed into ``tests/node/node_modules`` with ``npm ci`` when it is missing or not the locked version.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _support.asgi import serve, within
from _support.stores import close_store, make_store
from test_docs import examples, run_example

from example_app.app import create_app
from example_app.fake_model import answer_words
from litestar_resumable import StreamStore

NODE_DIR = Path(__file__).parent / "node"
SCRIPT = NODE_DIR / "ai_sdk_client.mjs"
REQUIRE_NODE = os.environ.get("RESUMABLE_REQUIRE_NODE") == "1"
NODE_TIMEOUT = 30.0  # seconds for any one step of the Node client
PROMPT = "Why do LLM streams need to be resumable?"

# The first test may wait for `npm ci` (up to 300 s) in the session fixture; every wait in a test is bounded.
pytestmark = pytest.mark.timeout(360)


def _unavailable(reason: str) -> None:
    if REQUIRE_NODE:
        pytest.fail(f"RESUMABLE_REQUIRE_NODE=1 but {reason}")
    pytest.skip(reason)


def _installed_matches_lock() -> bool:
    """Whether every package in package-lock.json is in node_modules at its locked version."""
    lock = json.loads((NODE_DIR / "package-lock.json").read_text(encoding="utf-8"))
    for path, entry in lock["packages"].items():
        if not path:
            continue  # the project itself
        manifest = NODE_DIR / path / "package.json"
        if not manifest.is_file():
            return False
        if json.loads(manifest.read_text(encoding="utf-8")).get("version") != entry.get("version"):
            return False
    return True


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` executable, with the locked ``ai`` SDK installed next to the client script."""
    executable = shutil.which("node")
    if executable is None:
        _unavailable("no node on PATH (install Node.js >= 18 to run the AI SDK client tests)")
    assert executable is not None
    version = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True).stdout
    major = int(re.match(r"v(\d+)", version.strip()).group(1))  # type: ignore[union-attr]
    if major < 18:
        _unavailable(f"node {version.strip()} is too old; the AI SDK needs Node.js >= 18")
    if not _installed_matches_lock():
        npm = shutil.which("npm")
        if npm is None:
            _unavailable(f"node is on PATH but npm is not, and {NODE_DIR / 'node_modules'} is not installed")
        assert npm is not None
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if installed.returncode != 0 or not _installed_matches_lock():
            pytest.fail(f"npm ci in {NODE_DIR} failed:\n{installed.stdout}\n{installed.stderr}")
    return executable


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[StreamStore]:
    if request.param == "redis":
        key_prefix = request.getfixturevalue("redis_prefix")  # skips without Redis; deletes the keys after
    made = make_store(request.param, key_prefix)
    try:
        yield made
    finally:
        await close_store(made)


class GatedModel:
    """A model whose answer (with awkward characters) stops halfway until the test opens the gate."""

    def __init__(self, *, fail_at_half: bool = False) -> None:
        self.words = [
            *answer_words(PROMPT),
            "ünïcødé ✓ ≠ 🙂 ",
            'a "quoted" \\ backslash ',
            "data: [DONE]\n\n",  # text that looks like the wire protocol stays text
            "and\nnew\r\nlines",
        ]
        self.half = len(self.words) // 2
        self.fail_at_half = fail_at_half
        self.gate = asyncio.Event()
        self.first_half_sent = asyncio.Event()

    @property
    def text(self) -> str:
        return "".join(self.words)

    @property
    def first_half(self) -> str:
        return "".join(self.words[: self.half])

    async def __call__(self, prompt: str) -> AsyncIterator[dict[str, str]]:
        assert prompt == PROMPT  # the SDK's message reached the model
        for index, word in enumerate(self.words):
            if index == self.half:
                self.first_half_sent.set()
                if self.fail_at_half:
                    raise RuntimeError("the model broke")
                await self.gate.wait()
            yield {"text": word}
            await asyncio.sleep(0)


class NodeClient:
    """The running Node script: the steps it reports on stdout, then its result."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.seen: list[str] = []

    async def _line(self) -> str:
        assert self.process.stdout is not None
        line = (await within(self.process.stdout.readline(), NODE_TIMEOUT)).decode()
        if not line:
            await self._failed("ended early")
        self.seen.append(line.rstrip("\n"))
        return line.rstrip("\n")

    async def _failed(self, what: str) -> None:
        assert self.process.stderr is not None
        await within(self.process.wait(), NODE_TIMEOUT)
        stderr = (await self.process.stderr.read()).decode()
        pytest.fail(
            f"the AI SDK client {what} (exit {self.process.returncode}); "
            f"stdout so far: {self.seen}\nstderr:\n{stderr}"
        )

    async def expect(self, step: str) -> None:
        line = await self._line()
        if line != step:
            await self._failed(f"said {line!r} where the test expected {step!r}")

    async def result(self) -> dict[str, Any]:
        line = await self._line()
        if not line.startswith("result "):
            await self._failed(f"said {line!r} where the test expected its result")
        await within(self.process.wait(), NODE_TIMEOUT)
        if self.process.returncode != 0:
            await self._failed("exited with an error after its result")
        result: dict[str, Any] = json.loads(line.removeprefix("result "))
        return result


@contextlib.asynccontextmanager
async def ai_sdk_client(
    node: str, http: httpx.AsyncClient, scenario: str, chat_id: str
) -> AsyncIterator[NodeClient]:
    process = await asyncio.create_subprocess_exec(
        node,
        str(SCRIPT),
        cwd=NODE_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdin is not None
        base = str(http.base_url).rstrip("/")
        process.stdin.write(
            json.dumps({"base": base, "chatId": chat_id, "prompt": PROMPT, "scenario": scenario}).encode()
        )
        await process.stdin.drain()
        process.stdin.close()
        yield NodeClient(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def deltas(count: int) -> list[str]:
    return ["text-delta"] * count


async def test_the_sdk_resumes_a_dropped_answer_from_its_start(node: str, store: StreamStore) -> None:
    model = GatedModel()
    async with (
        serve(create_app(store=store, model=model, retry=200)) as http,
        ai_sdk_client(node, http, "drop-and-resume", "chat-drop") as client,
    ):
        await client.expect("dropped")  # it read some text, then aborted its fetch
        await client.expect("reconnected")  # reconnectToStream got the running answer, not a 204
        model.gate.set()  # the second half exists only from now on: the reconnect must follow it live
        result = await client.result()
        stream_id = result["firstMessageId"].removeprefix("msg-")  # messageId is msg-<stream id>
        stream = await store.info(stream_id)
        assert stream is not None
        assert stream.status == "done"
        assert stream.last_position == len(result["reconnectChunkTypes"])  # every stored event, once
    assert result["reconnectMessageId"] == result["firstMessageId"]
    assert result["reconnectStartMessageId"] == result["firstMessageId"]
    assert result["firstText"]
    assert model.first_half.startswith(result["firstText"])  # the first connection saw part of the first half
    assert result["finalText"] == model.text  # the reconnect replayed from start and followed live
    assert result["reconnectChunkTypes"] == [
        "start",
        "text-start",
        *deltas(len(model.words)),
        "text-end",
        "finish",
    ]
    assert result["errors"] == []
    assert result["afterFinish"] is None  # the second reconnect after the finish got 204


async def test_stopping_mid_answer_ends_the_sdk_stream_with_abort(node: str, store: StreamStore) -> None:
    model = GatedModel()
    async with (
        serve(create_app(store=store, model=model, retry=200)) as http,
        ai_sdk_client(node, http, "follow", "chat-stop") as client,
    ):
        await client.expect("streaming")
        await within(model.first_half_sent.wait())
        await within(_until_stored(http, "chat-stop", model.first_half))
        stopped = await http.delete("/api/chat/chat-stop/stream")
        assert stopped.status_code == 204
        result = await client.result()
    assert result["messageId"].startswith("msg-")
    assert result["finalText"] == model.first_half
    assert result["chunkTypes"] == ["start", "text-start", *deltas(model.half), "abort"]
    assert result["lastChunk"] == {"type": "abort"}
    assert result["partStates"] == ["text:streaming"]  # no text-end after a stop; the SDK keeps the text
    assert result["errors"] == []  # an abort chunk is no error, and nothing failed the SDK's schema
    assert result["afterEnd"] is None


async def test_a_failed_answer_ends_the_sdk_stream_with_an_error_chunk(node: str, store: StreamStore) -> None:
    model = GatedModel(fail_at_half=True)
    async with (
        serve(create_app(store=store, model=model, retry=200)) as http,
        ai_sdk_client(node, http, "follow", "chat-fail") as client,
    ):
        await client.expect("streaming")
        result = await client.result()
    assert result["finalText"] == model.first_half
    assert result["chunkTypes"] == ["start", "text-start", *deltas(model.half), "text-end", "error"]
    assert result["lastChunk"] == {"type": "error", "errorText": "The answer failed."}
    assert result["partStates"] == ["text:done"]
    # the SDK reports the error chunk through onError, with its text and nothing else
    assert result["errors"] == [{"name": "Error", "message": "The answer failed."}]
    assert result["afterEnd"] is None


async def _until_stored(http: httpx.AsyncClient, chat_id: str, text: str) -> None:
    """Read the chat's running answer through the resume route until it holds ``text``: a second viewer, so
    the stop comes after the whole first half is stored, whatever the producer's batching."""
    seen = ""
    async with http.stream("GET", f"/api/chat/{chat_id}/stream") as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line.removeprefix("data: "))
                seen += chunk.get("delta", "") if chunk["type"] == "text-delta" else ""
            if seen == text:
                return
    pytest.fail(f"the stream ended with {seen!r}, before it held {text!r}")


async def test_the_documented_backend_works_with_the_sdk(node: str) -> None:
    code = dict(examples())["ai-sdk.md#1"]
    app = run_example("ai-sdk.md#1", code).app
    async with serve(app) as http, ai_sdk_client(node, http, "follow", "chat-docs") as client:
        await client.expect("streaming")
        result = await client.result()
    words = f"You asked: {PROMPT}. Resumable answers survive reloads.".split(" ")
    assert result["finalText"] == "".join(word + " " for word in words)
    assert result["chunkTypes"] == ["start", "text-start", *deltas(len(words)), "text-end", "finish"]
    assert result["messageId"].startswith("msg-")
    assert result["errors"] == []
    assert result["afterEnd"] is None
