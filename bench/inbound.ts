/**
 * Inbound: signed order events accepted and durably stored (synchronous_commit on) by
 * `stock-sync start`, 50 connections from autocannon, against a bare node:http server
 * answering 204 on the same port. Events fan out to a paused subscription: each one is stored
 * in the inbox, the outbox and a delivery row, but delivering is left to the `latency` figure.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import autocannon from "autocannon";
import { startConnector, signedEvent } from "./lib/connector.js";
import { createBenchDb, serverInfo } from "./lib/db.js";
import type { BenchOptions, Row } from "./lib/report.js";
import { freePort } from "./lib/sink.js";
import { progress, repeat, summarize } from "./lib/stats.js";

const CONNECTIONS = 50;
const P99_GOAL_MS = 25;

type Load = { rps: number; p50: number; p99: number; accepted: number };

export async function run(opts: BenchOptions): Promise<Row[]> {
  const seconds = opts.quick ? 1 : 3;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}/webhooks/oms`;
  const sc = (await serverInfo()).synchronousCommit;
  if (sc !== "on")
    progress(`inbound: synchronous_commit is ${sc} on the server, not on: the figure is flattered`);

  const bare = await startBare(port);
  const baseline = await repeat("inbound baseline", { warmups: 1, runs: 3 }, () => load(url, seconds, 204));
  await bare.stop();

  const bench = await createBenchDb("inbound");
  const dir = await mkdtemp(join(tmpdir(), "stock-sync-bench-inbound-"));
  try {
    const connector = await startConnector(bench, dir, {
      port,
      subscriptions: `  - name: orders\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/unused"\n    status: paused`,
    });
    try {
      const probe = await fetch(url, { method: "POST", ...signedEvent(0) });
      if (probe.status === 404) return [notAvailable("POST /webhooks/oms answered 404")];
      if (probe.status !== 202)
        throw new Error(`probe event answered ${probe.status}: ${await probe.text()}`);
      const product = await repeat("inbound stock-sync", { warmups: 1, runs: 3 }, () =>
        load(url, seconds, 202),
      );
      const stored = await bench.db.query<{ n: number }>("select count(*)::int as n from stock_sync.inbox");
      const accepted = 1 + product.reduce((n, r) => n + r.accepted, 0);
      if (stored.rows[0]!.n < accepted)
        throw new Error(`${accepted} accepted but ${stored.rows[0]!.n} stored`);
      return rows(product, baseline);
    } finally {
      await connector.stop("SIGTERM");
    }
  } finally {
    await bench.drop();
    await rm(dir, { recursive: true, force: true });
  }
}

function rows(product: Load[], baseline: Load[]): Row[] {
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
    async stop() {
      child.kill("SIGTERM");
      await once(child, "exit");
    },
  };
}
