// The peer of the benchmarks: Vercel's `resumable-stream` (with the `redis` client it is tested with) on
// Node's own http server, serving the same generator as benchmarks/app.py, on the same Redis.
//
//   node server.mjs --port 8000        (REDIS_URL, PEER_KEY_PREFIX from the environment)
//
//   GET  /pid                 this process's id (readiness)
//   GET  /noop                a trivial request (the Nagle check)
//   GET  /gen?id=&n=&rate=&size=&delay=&hold=
//                             start stream `id`: n items `rate` a second (0: as fast as possible), after
//                             `delay` s, then quiet for `hold` s (or until /release); SSE `data:` events
//   GET  /resume?id=          resumeExistingStream(id): what the producer buffered, then live
//   POST /release?id=         end the hold of stream `id` (on the process that produces it)
//   GET  /bench/redis-calls   the commands this process has sent to Redis so far, by name (every one is a
//                             round trip of its own: the library sends no scripts and no pipelines)
import http from "node:http";
import { performance } from "node:perf_hooks";
import { createClient } from "redis";
import { createResumableStreamContext } from "resumable-stream";

const argv = process.argv.slice(2);
const port = Number(argv[argv.indexOf("--port") + 1] || 8000);
const url = process.env.REDIS_URL || "redis://127.0.0.1:6379/0";
const keyPrefix = process.env.PEER_KEY_PREFIX || "bench-peer";

const publisher = createClient({ url });
const subscriber = createClient({ url });
await Promise.all([publisher.connect(), subscriber.connect()]);

const calls = {};
function counted(client, names) {
  for (const name of names) {
    const call = client[name].bind(client);
    client[name] = (...args) => {
      calls[name] = (calls[name] || 0) + 1;
      return call(...args);
    };
  }
}
counted(publisher, ["publish", "set", "get", "incr"]);
counted(subscriber, ["subscribe", "unsubscribe"]);
const context = createResumableStreamContext({ waitUntil: null, keyPrefix, publisher, subscriber });

const holds = new Map();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const now = () => (performance.timeOrigin + performance.now()) / 1000;

function items({ id, n, rate, size, delay, hold }) {
  const pad = "x".repeat(size);
  const interval = rate > 0 ? 1000 / rate : 0;
  let seq = 0;
  let due = 0;
  return new ReadableStream({
    async start() {
      if (delay > 0) await sleep(delay * 1000);
      due = performance.now();
    },
    async pull(controller) {
      if (seq >= n) {
        if (hold > 0) {
          await new Promise((resolve) => {
            const timer = setTimeout(resolve, hold * 1000);
            holds.set(id, () => {
              clearTimeout(timer);
              resolve();
            });
          });
          holds.delete(id);
        }
        controller.close();
        return;
      }
      if (interval && seq) {
        due += interval;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
      }
      controller.enqueue(`data: ${seq} ${now().toFixed(6)} ${pad}\n\n`);
      seq += 1;
    },
  });
}

async function pipe(stream, res) {
  res.writeHead(200, {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
  });
  res.flushHeaders(); // Node holds the headers back until the first write otherwise
  const reader = stream.getReader();
  let closed = false;
  res.on("close", () => {
    closed = true;
    reader.cancel().catch(() => {});
  });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done || closed) break;
      if (!res.write(value)) await new Promise((resolve) => res.once("drain", resolve));
    }
  } catch {
    // the client went away
  }
  res.end();
}

const server = http.createServer({ noDelay: true, keepAlive: true }, async (req, res) => {
  const { pathname, searchParams } = new URL(req.url, "http://localhost");
  const number = (name, fallback) => Number(searchParams.get(name) ?? fallback);
  try {
    if (pathname === "/pid") {
      res.end(String(process.pid));
    } else if (pathname === "/noop") {
      res.end("ok");
    } else if (pathname === "/bench/redis-calls") {
      res.writeHead(200, { "Content-Type": "application/json" }).end(JSON.stringify(calls));
    } else if (pathname === "/gen") {
      const id = searchParams.get("id");
      const options = {
        id,
        n: number("n", 1000),
        rate: number("rate", 0),
        size: number("size", 16),
        delay: number("delay", 0),
        hold: number("hold", 0),
      };
      const stream = await context.createNewResumableStream(id, () => items(options));
      await pipe(stream, res);
    } else if (pathname === "/resume") {
      const stream = await context.resumeExistingStream(searchParams.get("id"));
      if (!stream) {
        res.writeHead(stream === null ? 204 : 404).end();
        return;
      }
      await pipe(stream, res);
    } else if (pathname === "/release" && req.method === "POST") {
      const release = holds.get(searchParams.get("id"));
      if (release) release();
      res.writeHead(release ? 202 : 404).end();
    } else {
      res.writeHead(404).end();
    }
  } catch (error) {
    if (!res.headersSent) res.writeHead(500);
    res.end(String(error));
  }
});
server.keepAliveTimeout = 30_000;
server.listen(port, "127.0.0.1");

const stop = async () => {
  server.close();
  await Promise.allSettled([publisher.quit(), subscriber.quit()]);
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
