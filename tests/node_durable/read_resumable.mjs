// Reads a stream with the official TypeScript client (tests/test_durable_streams_node.py):
//   node read_resumable.mjs <stream url> <offset> <sse|long-poll> <items wanted, 0 for all>
// It reads live from <offset> until it has the items wanted (then goes away, as a client that drops does)
// or the stream is closed. It prints one JSON line {"caughtUp": true} when it first has all there is
// (from then on it waits live), and a last one {"items", "offset", "closed"}: the JSON items it read, the
// offset to resume from, and whether it saw the close.
import { stream } from "@durable-streams/client"

const [url, offset, live, wanted] = process.argv.slice(2)
const want = Number(wanted)
const res = await stream({ url, offset, live })
const items = []
let last = { offset, closed: false }
let caughtUp = false

// The close comes as a batch too (with no items if it comes on its own); the session's own end can be
// settled before the last batch is handed over, so the batches alone decide when to stop.
await new Promise((resolve) => {
  const unsubscribe = res.subscribeJson((batch) => {
    items.push(...batch.items)
    last = { offset: batch.offset, closed: batch.streamClosed }
    if ((want > 0 && items.length >= want) || batch.streamClosed) {
      unsubscribe()
      resolve()
    } else if (batch.upToDate && !caughtUp) {
      caughtUp = true
      console.log(JSON.stringify({ caughtUp }))
    }
  })
})
res.cancel()
console.log(JSON.stringify({ items, ...last }))
