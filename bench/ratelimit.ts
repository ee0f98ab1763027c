/**
 * Rate-limit accuracy: a backlog of 2,000 messages per subscription limited to 50 requests/s,
 * sent by `stock-sync start`; the receiver records arrival times. Three subscriptions with the
 * same limit run side by side, each its own sample: three runs in the 40 s that one takes.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Db } from "../src/db/db.js";
import { insertBacklog } from "../test/helpers/backlog.js";
import { startConnector } from "./lib/connector.js";
import { createBenchDb } from "./lib/db.js";
import type { BenchOptions, Row } from "./lib/report.js";
import { startSink } from "./lib/sink.js";
import { progress, summarize } from "./lib/stats.js";

const LIMIT = 50;
const SUBSCRIPTIONS = ["limited-1", "limited-2", "limited-3"];

export async function run(opts: BenchOptions): Promise<Row[]> {
  const backlog = opts.quick ? 100 : 2_000;
  const bench = await createBenchDb("ratelimit");
  const dir = await mkdtemp(join(tmpdir(), "stock-sync-bench-ratelimit-"));
  const sink = await startSink({ keep: "meta" });
  try {
    const subscriptions = SUBSCRIPTIONS.map(
      (name) =>
        `  - name: ${name}\n    subjects: ["order.*"]\n    url: "${sink.url}/${name}"\n    rate_limit: { requests: ${LIMIT}, per: 1s }\n    concurrency: 8`,
    ).join("\n");
    const connector = await startConnector(bench, dir, { port: 0, subscriptions });
    try {
      progress("ratelimit: warm-up (a backlog of 60 per subscription)");
      await send(bench.db, sink, "warm", 60);
      progress(
        `ratelimit: ${backlog} per subscription at ${LIMIT}/s (about ${Math.ceil(backlog / LIMIT)} s)`,
      );
      const arrivals = await send(bench.db, sink, "run", backlog);
      const per = SUBSCRIPTIONS.map((name) => arrivals.filter((a) => a.path === `/${name}`).map((a) => a.at));
      const achieved = summarize(per.map(achievedRate));
      const peak = summarize(per.map(maxInWindow));
      const configured = { label: "configured limit", unit: "req/s", value: summarize([LIMIT]) };
      return [
        {
          figure: `rate limit ${LIMIT}/s, backlog ${backlog}: achieved rate`,
          unit: "req/s",
          value: achieved,
          baseline: configured,
          ratio: summarize(per.map((at) => achievedRate(at) / LIMIT)),
          goal: "≥ 0.95× limit",
          met: achieved.median >= 0.95 * LIMIT,
        },
        {
          figure: `rate limit ${LIMIT}/s, backlog ${backlog}: max in any 1 s window`,
          unit: "req",
          value: peak,
          baseline: configured,
          ratio: summarize(per.map((at) => maxInWindow(at) / LIMIT)),
          goal: `≤ ${LIMIT} every run`,
          met: peak.max <= LIMIT,
        },
      ];
    } finally {
      await connector.stop("SIGTERM");
    }
  } finally {
    await sink.close();
    await bench.drop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** A backlog of `n` messages, each with a delivery for every subscription, then waits for all. */
async function send(db: Db, sink: Awaited<ReturnType<typeof startSink>>, tag: string, n: number) {
  sink.reset();
  await insertBacklog(db, { tag, n, subscriptions: SUBSCRIPTIONS });
  await sink.waitFor(n * SUBSCRIPTIONS.length, ((n / LIMIT) * 2 + 30) * 1000);
  return sink.arrivals;
}

/**
 * Requests per second over whole seconds from the first arrival: a limiter that lets 50 through
 * at t=0 and 50 more at each second after is exactly at 50/s, where n / (last − first) would
 * count the first burst as free.
 */
export function achievedRate(at: readonly number[]): number {
  const sorted = [...at].sort((a, b) => a - b);
  const first = sorted[0]!;
  const whole = Math.floor((sorted.at(-1)! - first) / 1000);
  if (whole < 1) return sorted.length;
  return sorted.filter((t) => t < first + whole * 1000).length / whole;
}

/** The most requests that arrived within any 1,000 ms (a window starting at each arrival). */
export function maxInWindow(at: readonly number[]): number {
  const sorted = [...at].sort((a, b) => a - b);
  let max = 0;
  let j = 0;
  for (let i = 0; i < sorted.length; i++) {
    while (sorted[i]! - sorted[j]! >= 1000) j++;
    max = Math.max(max, i - j + 1);
  }
  return max;
}
