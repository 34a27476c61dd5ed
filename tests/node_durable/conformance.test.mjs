// The Durable Streams server conformance suite, run against DURABLE_STREAMS_URL (tests/test_durable_streams_node.py).
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

runConformanceTests({ baseUrl: process.env.DURABLE_STREAMS_URL })
