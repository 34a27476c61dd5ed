// The Vercel AI SDK's own chat client against a litestar-resumable backend (driven by tests/test_ai_sdk_node.py).
//
// Input: one JSON object on stdin (or as the first argument):
//   { "base": "http://127.0.0.1:8000", "chatId": "chat-1", "prompt": "...", "scenario": "drop-and-resume" }
//
// Scenarios:
//   drop-and-resume  send a user message with DefaultChatTransport.sendMessages; read chunks until the
//                    assistant text has some content; abort the fetch (the connection drops); print
//                    `dropped`; reconnectToStream (must not be null: the answer is still running); print
//                    `reconnected`; read the reconnect to its end, which must replay from `start` and end
//                    with `finish`; then a second reconnectToStream, which must be null (HTTP 204).
//   follow           send a user message; print `streaming` once the assistant text has some content; read
//                    the stream to its end (`finish`, `abort` or `error`); then reconnectToStream, which must
//                    be null (HTTP 204).
//
// stdout carries one line per step (`dropped`, `reconnected`, `streaming`), then `result {json}`. On any
// SDK error (a chunk failing the SDK's schema, an HTTP error, a broken stream) or a broken expectation the
// script prints the reason on stderr and exits 1. An `error` chunk is not an SDK error: the SDK reports it
// through onError with the chunk's errorText, and the script lists it in the result.

import { DefaultChatTransport, readUIMessageStream } from 'ai';

const TIMEOUT_MS = 30_000;

const MAX_DETAIL = 2000; // a schema error's message lists every chunk type the SDK knows

function clip(text) {
  return text.length > MAX_DETAIL ? `${text.slice(0, MAX_DETAIL)}... (${text.length} characters)` : text;
}

function fail(message, cause) {
  const detail = cause === undefined ? '' : `\n${clip(String(cause?.stack ?? cause))}`;
  process.stderr.write(`ai_sdk_client: ${clip(message)}${detail}\n`);
  process.exit(1);
}

function step(line) {
  process.stdout.write(`${line}\n`);
}

async function readInput() {
  if (process.argv[2]) return JSON.parse(process.argv[2]);
  let text = '';
  for await (const piece of process.stdin) text += piece;
  return JSON.parse(text);
}

function textOf(message) {
  return (message?.parts ?? [])
    .filter((part) => part.type === 'text')
    .map((part) => part.text)
    .join('');
}

function describe(error) {
  return { name: error?.name ?? typeof error, message: String(error?.message ?? error) };
}

// Records every chunk the transport hands on (after the SDK's schema validation) on its way to
// readUIMessageStream, so the result can show what went over the wire.
function recorder(chunks) {
  return new TransformStream({
    transform(chunk, controller) {
      chunks.push(chunk);
      controller.enqueue(chunk);
    },
  });
}

// Reads one response (a chunk stream from the transport) with readUIMessageStream.
//   until(message): stop early (and cancel the stream) once it returns true.
//   ignoreAfter: errors reported after this signal aborted are the expected end of a dropped connection.
async function read(stream, { until, ignoreAfter } = {}) {
  const chunks = [];
  const errors = [];
  let message;
  let reachedUntil = false;
  const messages = readUIMessageStream({
    stream: stream.pipeThrough(recorder(chunks)),
    onError: (error) => {
      if (!ignoreAfter?.aborted) errors.push(error);
    },
  });
  for await (const snapshot of messages) {
    message = snapshot;
    if (until?.(snapshot)) {
      reachedUntil = true;
      break;
    }
  }
  // An `error` chunk reaches onError as new Error(errorText); anything else is the SDK rejecting the stream.
  const errorTexts = chunks.filter((c) => c.type === 'error').map((c) => c.errorText);
  const sdkErrors = errors.filter((e) => !(e?.name === 'Error' && errorTexts.includes(e.message)));
  if (sdkErrors.length > 0) {
    fail(`the SDK reported an error: ${sdkErrors.map((e) => `${e.name}: ${e.message}`).join('; ')}`);
  }
  return { chunks, errors: errors.map(describe), message, reachedUntil };
}

function checkWhole(label, { chunks }) {
  const types = chunks.map((c) => c.type);
  if (types[0] !== 'start') fail(`${label}: the first chunk is ${JSON.stringify(types[0])}, not "start": ${types}`);
  const last = types.at(-1);
  if (!['finish', 'abort', 'error'].includes(last)) {
    fail(`${label}: the stream ended without a terminal chunk (last: ${JSON.stringify(last)}): ${types}`);
  }
}

function userMessage(prompt) {
  return { id: 'user-1', role: 'user', parts: [{ type: 'text', text: prompt }] };
}

async function send(transport, input, abortSignal) {
  return transport.sendMessages({
    chatId: input.chatId,
    messages: [userMessage(input.prompt)],
    trigger: 'submit-message',
    messageId: undefined,
    abortSignal,
  });
}

async function dropAndResume(transport, input) {
  const connection = new AbortController();
  const first = await read(await send(transport, input, connection.signal), {
    until: (message) => textOf(message).length > 0,
    ignoreAfter: connection.signal,
  });
  if (!first.reachedUntil) fail(`the first connection ended before any text: ${JSON.stringify(first.chunks)}`);
  connection.abort(); // the fetch is aborted: the connection drops mid-answer
  step('dropped');

  const resumed = await transport.reconnectToStream({ chatId: input.chatId });
  if (resumed === null) fail('reconnectToStream returned null (204) while the answer was still running');
  step('reconnected');
  const second = await read(resumed);
  checkWhole('the reconnect', second);

  const afterFinish = await transport.reconnectToStream({ chatId: input.chatId });
  if (afterFinish !== null) await afterFinish.cancel();
  return {
    firstMessageId: first.message?.id ?? null,
    firstText: textOf(first.message),
    reconnectMessageId: second.message?.id ?? null,
    reconnectStartMessageId: second.chunks[0]?.messageId ?? null,
    finalText: textOf(second.message),
    reconnectChunkTypes: second.chunks.map((c) => c.type),
    errors: second.errors,
    afterFinish: afterFinish === null ? null : 'a stream',
  };
}

async function follow(transport, input) {
  let announced = false;
  const answer = await read(await send(transport, input), {
    until: (message) => {
      if (!announced && textOf(message).length > 0) {
        announced = true;
        step('streaming');
      }
      return false;
    },
  });
  if (!announced) step('streaming'); // an answer without text still lets the test go on
  checkWhole('the answer', answer);
  const afterEnd = await transport.reconnectToStream({ chatId: input.chatId });
  if (afterEnd !== null) await afterEnd.cancel();
  return {
    messageId: answer.message?.id ?? null,
    finalText: textOf(answer.message),
    partStates: (answer.message?.parts ?? []).map((part) => `${part.type}:${part.state}`),
    chunkTypes: answer.chunks.map((c) => c.type),
    lastChunk: answer.chunks.at(-1) ?? null,
    errors: answer.errors,
    afterEnd: afterEnd === null ? null : 'a stream',
  };
}

const SCENARIOS = { 'drop-and-resume': dropAndResume, follow };

async function main() {
  const input = await readInput();
  const scenario = SCENARIOS[input.scenario];
  if (!scenario) fail(`unknown scenario ${JSON.stringify(input.scenario)}; one of ${Object.keys(SCENARIOS)}`);
  const transport = new DefaultChatTransport({ api: `${input.base}/api/chat` });
  const timer = setTimeout(() => fail(`no result after ${TIMEOUT_MS} ms`), TIMEOUT_MS);
  const result = await scenario(transport, input);
  clearTimeout(timer);
  step(`result ${JSON.stringify(result)}`);
}

process.on('unhandledRejection', (reason) => fail('unhandled rejection', reason));
main().catch((error) => fail(`${error?.name ?? 'error'}: ${error?.message ?? error}`, error));
