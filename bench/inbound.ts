/**
 * Inbound: signed order events accepted and durably stored (synchronous_commit on) by
 * `stock-sync start`, 50 connections from autocannon, against a bare node:http server
 * answering 204 on the same port. Events fan out to a paused subscription: each one is stored
 * in the inbox, the outbox and a delivery row, but delivering is left to the `latency` figure.
 * Measured with `server.inbound.batches_in_flight` 1 (the default, which carries the goal) and 2,
 * each in its own process and database after the baseline.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { startConnector, signedEvent } from "./lib/connector.js";
import { processCpuMs } from "./lib/cpu.js";
import { serverCpu } from "./lib/timing.js";
import { createBenchDb, serverInfo } from "./lib/db.js";
import type { BenchOptions, Row } from "./lib/report.js";
import { freePort } from "./lib/sink.js";
import { progress, repeat, summarize } from "./lib/stats.js";

const CONNECTIONS = 50;
const P99_GOAL_MS = 25;

type Load = { rps: number; p50: number; p99: number; accepted: number };
/** Where a run's time went: CPU per answered request (µs) and, for the product, its batches. */
type Costs = { cpuUs: number; pgUs?: number; batch?: number; phasesMs?: Record<string, number> };

export async function run(opts: BenchOptions): Promise<Row[]> {
  const seconds = opts.quick ? 1 : 3;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/webhooks/oms`;
  const sc = (await serverInfo()).synchronousCommit;
  if (sc !== "on")
    progress(`inbound: synchronous_commit is ${sc} on the server, not on: the figure is flattered`);

  const bare = await startBare(port);
  const baseline = await repeat("inbound baseline", { warmups: 1, runs: 3 }, async () => {
    const cpu = processCpuMs(bare.pid);
    const l = await load(url, seconds, 204);
    return { ...l, cpuUs: perRequest(processCpuMs(bare.pid) - cpu, l) };
  });
  await bare.stop();

  // the default first, then the other setting, each in a fresh database and process
  const one = await measure(port, seconds, 1);
  if ("unavailable" in one) return [notAvailable(one.unavailable)];
  const two = await measure(port, seconds, 2);
  if ("unavailable" in two) return [notAvailable(two.unavailable)];
  return [...rows(one, baseline), inFlightRow(two, baseline)];
}

type Measured = (Load & Costs)[];

/** `stock-sync start` with `batches_in_flight`, loaded like the baseline; what it stored is checked. */
async function measure(
  port: number,
  seconds: number,
  inFlight: 1 | 2,
): Promise<Measured | { unavailable: string }> {
  const url = `http://127.0.0.1:${port}/webhooks/oms`;
  const bench = await createBenchDb("inbound");
  const dir = await mkdtemp(join(tmpdir(), "stock-sync-bench-inbound-"));
  try {
    const connector = await startConnector(bench, dir, {
      port,
      subscriptions: `  - name: orders\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/unused"\n    status: paused`,
      inbound: `    batches_in_flight: ${inFlight}\n`,
    });
    try {
      const probe = await fetch(url, { method: "POST", ...signedEvent(0) });
      if (probe.status === 404) return { unavailable: "POST /webhooks/oms answered 404" };
      if (probe.status !== 202)
        throw new Error(`probe event answered ${probe.status}: ${await probe.text()}`);
      const pid = connector.child.pid!;
      const product = await repeat(
        `inbound stock-sync, ${inFlight} in flight`,
        { warmups: 1, runs: 3 },
        async () => {
          const pg = await serverCpu(bench.db);
          const before = { cpu: processCpuMs(pid), m: await scrape(port) };
          const l = await load(url, seconds, 202);
          const after = {
            cpu: processCpuMs(pid),
            pg: (await pg.stop()) ?? Number.NaN,
            m: await scrape(port),
          };
          return {
            ...l,
            ...batchCosts(before.m, after.m),
            cpuUs: perRequest(after.cpu - before.cpu, l),
            pgUs: perRequest(after.pg, l),
          };
        },
      );
      const stored = await bench.db.query<{ n: number }>("select count(*)::int as n from stock_sync.inbox");
      const accepted = 1 + product.reduce((n, r) => n + r.accepted, 0);
      if (stored.rows[0]!.n < accepted)
        throw new Error(`${accepted} accepted but ${stored.rows[0]!.n} stored`);
      return product;
    } finally {
      await connector.stop("SIGTERM");
    }
  } finally {
    await bench.drop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The other setting, for information: the default's figure carries the goal. */
function inFlightRow(product: Measured, baseline: Measured): Row {
  const ratio = summarize(product.map((p, i) => p.rps / baseline[i]!.rps));
  return {
    figure: "inbound, server.inbound.batches_in_flight: 2",
    unit: "req/s",
    value: summarize(product.map((p) => p.rps)),
    baseline: { label: "bare node:http 204", unit: "req/s", value: summarize(baseline.map((b) => b.rps)) },
    ratio,
    goal: "(info: the default is 1)",
    met: null,
    note: `p99 ${summarize(product.map((p) => p.p99)).median} ms, p50 ${summarize(product.map((p) => p.p50)).median} ms; ${costNote(product, baseline)}`,
  };
}

function rows(product: (Load & Costs)[], baseline: (Load & Costs)[]): Row[] {
  // runs are sequential (one server on the port at a time): pair them by index
  const ratio = summarize(product.map((p, i) => p.rps / baseline[i]!.rps));
  const p99 = summarize(product.map((p) => p.p99));
  return [
    {
      figure: `inbound signed events, ${CONNECTIONS} connections`,
      unit: "req/s",
      value: summarize(product.map((p) => p.rps)),
      baseline: { label: "bare node:http 204", unit: "req/s", value: summarize(baseline.map((b) => b.rps)) },
      ratio,
      goal: "≥ 0.2× bare",
      met: ratio.median >= 0.2,
      note: costNote(product, baseline),
    },
    {
      figure: "inbound p99 acknowledgement",
      unit: "ms",
      value: p99,
      baseline: { label: "bare node:http p99", unit: "ms", value: summarize(baseline.map((b) => b.p99)) },
      ratio: null,
      goal: `≤ ${P99_GOAL_MS} ms`,
      met: p99.median <= P99_GOAL_MS,
      note: `p50 ${summarize(product.map((p) => p.p50)).median} ms`,
    },
  ];
}

function notAvailable(why: string): Row {
  const zero = summarize([0]);
  return {
    figure: "inbound signed events",
    unit: "req/s",
    value: zero,
    baseline: null,
    ratio: null,
    goal: "≥ 0.2× bare",
    met: false,
    note: `not available: ${why}`,
  };
}

/** CPU per request and, per batch, its size and where its time went (medians of the runs). */
function costNote(product: (Load & Costs)[], baseline: Costs[]): string {
  const med = (xs: (number | undefined)[]) => summarize(xs.map((x) => x ?? Number.NaN)).median;
  const phases = Object.keys(product[0]?.phasesMs ?? {})
    .map((p) => `${p} ${med(product.map((r) => r.phasesMs?.[p])).toFixed(2)}`)
    .join(", ");
  return (
    `CPU per request: stock-sync ${med(product.map((r) => r.cpuUs)).toFixed(0)} µs + PostgreSQL ${med(product.map((r) => r.pgUs)).toFixed(0)} µs, ` +
    `bare ${med(baseline.map((r) => r.cpuUs)).toFixed(0)} µs; batches of ${med(product.map((r) => r.batch)).toFixed(1)} events, ` +
    `per batch (ms): ${phases}`
  );
}

const perRequest = (ms: number, l: Load) => (ms * 1000) / Math.max(1, l.accepted);

/** The connector's inbound batch series from /metrics. */
async function scrape(port: number): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out = new Map<string, number>();
  for (const m of text.matchAll(
    /^(stock_sync_inbound_batch_(?:size|seconds)_(?:sum|count))(\{phase="(\w+)"\})? (\S+)$/gm,
  )) {
    out.set(m[3] ? `${m[1]}:${m[3]}` : m[1]!, Number(m[4]));
  }
  return out;
}

function batchCosts(
  before: Map<string, number>,
  after: Map<string, number>,
): Pick<Costs, "batch" | "phasesMs"> {
  const delta = (k: string) => (after.get(k) ?? 0) - (before.get(k) ?? 0);
  const batches = delta("stock_sync_inbound_batch_size_count");
  const phasesMs: Record<string, number> = {};
  for (const k of after.keys()) {
    const [name, phase] = k.split(":");
    if (name !== "stock_sync_inbound_batch_seconds_sum" || !phase) continue;
    const n = delta(`stock_sync_inbound_batch_seconds_count:${phase}`);
    phasesMs[phase] = n ? (delta(k) * 1000) / n : Number.NaN;
  }
  return { batch: delta("stock_sync_inbound_batch_size_sum") / Math.max(1, batches), phasesMs };
}

let sent = 0;

/** `seconds` of 50 connections posting distinct signed events; only `expect`ed answers count. */
async function load(url: string, seconds: number, expect: number): Promise<Load> {
  const nowSec = Math.floor(Date.now() / 1000);
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: seconds,
    requests: [
      {
        method: "POST",
        setupRequest: (req) => {
          const e = signedEvent(++sent, nowSec);
          return { ...req, body: e.body, headers: e.headers };
        },
      },
    ],
  });
  const accepted = result.statusCodeStats[String(expect)]?.count ?? 0;
  if (result.non2xx > 0 || result.errors > 0) {
    progress(
      `${result.non2xx} non-2xx answers, ${result.errors} errors (${JSON.stringify(result.statusCodeStats)})`,
    );
  }
  return {
    rps: Number(accepted) / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    accepted: Number(accepted),
  };
}

/** The baseline: node:http reading the body and answering 204, in its own process like the connector. */
async function startBare(port: number) {
  const code = `require("node:http").createServer((q, s) => { q.resume(); q.on("end", () => s.writeHead(204).end()); })
    .listen(${port}, "127.0.0.1", () => console.log("ready"));`;
  const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  await once(child.stdout, "data");
  return {
    pid: child.pid!,
    async stop() {
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}
