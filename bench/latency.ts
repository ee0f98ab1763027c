/**
 * End-to-end latency at 100 events/s: a signed order event posted to `stock-sync start` until
 * the subscriber receives it, against the same event posted to the same receiver directly. The
 * figure is what the connector adds: its p50 and p99 minus the direct call's.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Agent, request } from "undici";
import { startConnector, signedEvent } from "./lib/connector.js";
import { createBenchDb } from "./lib/db.js";
import type { BenchOptions, Row } from "./lib/report.js";
import { freePort, type Sink, startSink } from "./lib/sink.js";
import { quantile, repeat, summarize } from "./lib/stats.js";

const RATE = 100;

type Latencies = { p50: number; p99: number; ackP50: number; ackP99: number };

export async function run(opts: BenchOptions): Promise<Row[]> {
  const events = opts.quick ? 50 : 500; // 5 s per measurement at 100/s
  const bench = await createBenchDb("latency");
  const dir = await mkdtemp(join(tmpdir(), "stock-sync-bench-latency-"));
  const sink = await startSink({ keep: "all" });
  const agent = new Agent({ connections: 16 });
  try {
    const port = await freePort();
    const connector = await startConnector(bench, dir, {
      port,
      subscriptions: `  - name: orders\n    subjects: ["order.*"]\n    url: "${sink.url}/orders"\n    concurrency: 8`,
    });
    try {
      const inbound = `http://127.0.0.1:${port}/webhooks/oms`;
      const runs = await repeat("latency", { warmups: 1, runs: 3 }, async (i) => {
        const n = i < 0 ? Math.ceil(events / 5) : events; // a short warm-up: pools, JIT, the LISTEN path
        return {
          direct: await measure(sink, agent, `${sink.url}/direct`, n, 204),
          product: await measure(sink, agent, inbound, n, 202),
        };
      });
      const added = (k: keyof Latencies) => summarize(runs.map((r) => r.product[k] - r.direct[k]));
      const direct = (k: keyof Latencies) => summarize(runs.map((r) => r.direct[k]));
      const through = (k: keyof Latencies) => summarize(runs.map((r) => r.product[k])).median.toFixed(1);
      const row = (k: "p50" | "p99", goalMs: number): Row => {
        const value = added(k);
        return {
          figure: `latency inbound → delivered at ${RATE}/s, ${k} added`,
          unit: "ms",
          value,
          baseline: { label: `receiver called directly, ${k}`, unit: "ms", value: direct(k) },
          ratio: null,
          goal: `≤ ${goalMs} ms added`,
          met: value.median <= goalMs,
          // the part until the 202 tells intake (commit) from delivery (wake-up, send, record)
          note: `${k} through stock-sync ${through(k)} ms, of which until the 202 ${through(k === "p50" ? "ackP50" : "ackP99")} ms`,
        };
      };
      return [row("p50", 10), row("p99", 50)];
    } finally {
      await connector.stop("SIGTERM");
    }
  } finally {
    await agent.close();
    await sink.close();
    await bench.drop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Posts `n` signed events at RATE per second, on a fixed schedule (not waiting for answers). */
async function measure(sink: Sink, agent: Agent, url: string, n: number, expect: number): Promise<Latencies> {
  sink.reset();
  const sentAt = new Map<string, number>();
  const posts: Promise<number>[] = [];
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const due = start + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const event = signedEvent(nextId++);
    const at = performance.now();
    sentAt.set(event.id, at);
    posts.push(post(agent, url, event, expect).then((answered) => answered - at));
  }
  const acks = await Promise.all(posts);
  await sink.waitFor(n, 30_000);
  const latencies = sink.arrivals.map((a) => {
    const { id } = JSON.parse(a.body.toString("utf8")) as { id: string };
    return a.at - sentAt.get(id)!;
  });
  return {
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    ackP50: quantile(acks, 0.5),
    ackP99: quantile(acks, 0.99),
  };
}

let nextId = 1;

/** Resolves with the instant the answer came back. */
async function post(agent: Agent, url: string, e: ReturnType<typeof signedEvent>, expect: number) {
  const res = await request(url, { dispatcher: agent, method: "POST", headers: e.headers, body: e.body });
  const answered = performance.now();
  await res.body.dump();
  if (res.statusCode !== expect) throw new Error(`${url} answered ${res.statusCode}, expected ${expect}`);
  return answered;
}
