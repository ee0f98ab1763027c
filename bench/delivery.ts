/**
 * Outbox delivery: a backlog of 50,000 messages to one subscription (no rate limit, attempts
 * recorded) and a receiver answering 204, against pg-boss 10 sending the same 50,000 to the same
 * receiver from the same PostgreSQL. Both are timed from the moment their workers start until
 * the last message is delivered and recorded as such.
 */
import PgBoss from "pg-boss";
import PQueue from "p-queue";
import { Agent, request } from "undici";
import { loadConfig } from "../src/config/index.js";
import type { Db } from "../src/db/db.js";
import { insertBacklog } from "../test/helpers/backlog.js";
import { startEngine } from "../test/helpers/engine.js";
import { createBenchDb } from "./lib/db.js";
import type { BenchOptions, Row } from "./lib/report.js";
import { startSink, type Sink } from "./lib/sink.js";
import { progress, repeat, summarize } from "./lib/stats.js";

/**
 * A run stops counting after this long, so a slow engine cannot blow the suite's 10-minute
 * budget: the figure is then the rate over the first part of the 50,000 (the row says so).
 */
const CAP_MS = Number(process.env.BENCH_DELIVERY_CAP_S ?? 25) * 1000;
/** Requests in flight at once, the same for both: the subscription's `concurrency`. */
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
/**
 * pg-boss settings, the best of a sweep on this machine (docs/benchmarks.md): v10 polls at least
 * every 0.5 s and waits out the rest of the interval after a short batch, so only batches that
 * take longer than that to send (≥ 5,000 jobs at this speed) keep it busy; a second worker
 * fetches while the first one sends. One fetch and one completion then serve 5,000 jobs.
 */
const PGBOSS = {
  batchSize: Number(process.env.BENCH_PGBOSS_BATCH ?? 5000),
  workers: Number(process.env.BENCH_PGBOSS_WORKERS ?? 2),
  pollingIntervalSeconds: 0.5,
};

export async function run(opts: BenchOptions): Promise<Row[]> {
  const total = Number(process.env.BENCH_DELIVERY_MESSAGES ?? (opts.quick ? 300 : 50_000));
  const bench = await createBenchDb("delivery", 20);
  const sink = await startSink({ keep: "none" });
  const boss = new PgBoss({
    connectionString: bench.url,
    schema: "pgboss",
    max: 10,
    supervise: false, // no maintenance or cron work competing with the measured sends
    schedule: false,
  });
  boss.on("error", (err) => progress(`pg-boss error: ${err.message}`));
  await boss.start();
  try {
    const runs = await repeat("delivery", { warmups: 1, runs: 3 }, async (i) => {
      // the warm-up is small: it only has to warm pools, JIT and caches
      const n = i < 0 ? Math.ceil(total / 25) : total;
      return {
        engine: await engineRun(bench.db, sink, n),
        pgboss: await pgBossRun(boss, sink, n),
        ceiling: await ceilingRun(sink, n),
      };
    });
    const value = summarize(runs.map((r) => r.engine.rate));
    const baseline = summarize(runs.map((r) => r.pgboss.rate));
    const ratio = summarize(runs.map((r) => r.engine.rate / r.pgboss.rate));
    const capped = (k: "engine" | "pgboss") =>
      runs.some((r) => r[k].delivered < total)
        ? `${k === "engine" ? "stock-sync" : "pg-boss"} stopped at ${CAP_MS / 1000} s with ${runs.map((r) => r[k].delivered.toLocaleString("en-US")).join(" / ")} delivered`
        : "";
    const note = [capped("engine"), capped("pgboss")].filter(Boolean).join("; ");
    return [
      {
        figure: `delivery ${total.toLocaleString("en-US")} msgs, concurrency ${CONCURRENCY}`,
        unit: "msg/s",
        value,
        baseline: {
          label: `pg-boss (batch ${PGBOSS.batchSize} × ${PGBOSS.workers} workers)`,
          unit: "msg/s",
          value: baseline,
        },
        ratio,
        goal: "≥ 3× pg-boss",
        met: ratio.median >= 3,
        ...(note ? { note } : {}),
      },
      {
        // What the goal asks of this machine: 3× pg-boss against the most any sender can do.
        figure: `delivery ${total.toLocaleString("en-US")} msgs vs the HTTP ceiling`,
        unit: "msg/s",
        value,
        baseline: {
          label: `the same ${CONCURRENCY}-concurrent undici POSTs, no database`,
          unit: "req/s",
          value: summarize(runs.map((r) => r.ceiling.rate)),
        },
        ratio: summarize(runs.map((r) => r.engine.rate / r.ceiling.rate)),
        goal: "(info)",
        met: null,
        note: `3× pg-boss is ${summarize(runs.map((r) => (3 * r.pgboss.rate) / r.ceiling.rate)).median.toFixed(2)}× this ceiling`,
      },
    ];
  } finally {
    await boss.stop({ graceful: false, wait: true }).catch(() => undefined);
    await sink.close();
    await bench.drop();
  }
}

/** A fresh backlog each run, as the outbox holds it after a burst of events. */
async function freshBacklog(db: Db, n: number): Promise<void> {
  await db.query("truncate stock_sync.attempts, stock_sync.deliveries, stock_sync.messages");
  await insertBacklog(db, { tag: "bulk", n, subscriptions: ["bulk"] });
  await db.query("vacuum analyze stock_sync.messages, stock_sync.deliveries");
}

const engineYaml = (url: string) => `subscriptions:
  - name: bulk
    subjects: ["order.*"]
    url: "${url}/bulk"
    concurrency: ${CONCURRENCY}
    timeout: 5s
`;

type Result = { rate: number; delivered: number };

async function engineRun(db: Db, sink: Sink, n: number): Promise<Result> {
  await freshBacklog(db, n);
  sink.reset();
  let delivered = 0;
  let finished: () => void = () => undefined;
  const done = new Promise<void>((r) => (finished = r));
  const started = performance.now();
  const engine = await startEngine(db, loadConfig(engineYaml(sink.url), {}).config, {
    onAttempt: (_s, _r, outcome) => {
      if (outcome === "delivered" && ++delivered === n) finished();
    },
  });
  await Promise.race([done, sleep(CAP_MS)]);
  const result = { rate: delivered / ((performance.now() - started) / 1000), delivered };
  await engine.stop();
  return result;
}

let queues = 0;

async function pgBossRun(boss: PgBoss, sink: Sink, n: number): Promise<Result> {
  // a fresh queue (its own partition) per run, as the engine gets a fresh backlog
  const queue = `bulk_${++queues}`;
  await boss.createQueue(queue);
  for (let i = 0; i < n; i += 10_000) {
    const jobs = Array.from({ length: Math.min(10_000, n - i) }, (_, j) => ({
      name: queue,
      data: { id: `evt_${i + j + 1}`, type: "created" },
    }));
    await boss.insert(jobs);
  }
  sink.reset();
  const { post, agent } = poster(sink);
  const started = performance.now();
  const workers: string[] = [];
  for (let w = 0; w < PGBOSS.workers; w++) {
    workers.push(
      await boss.work<object>(
        queue,
        { batchSize: PGBOSS.batchSize, pollingIntervalSeconds: PGBOSS.pollingIntervalSeconds },
        // resolving completes the batch (one UPDATE for all of its jobs), throwing fails it
        async (jobs) => Promise.all(jobs.map((job) => post(JSON.stringify(job.data)))),
      ),
    );
  }
  // pg-boss completes a batch after its handler resolves, without awaiting: count what is recorded
  let delivered = 0;
  while (delivered < n && performance.now() - started < CAP_MS) {
    await sleep(sink.count < n ? 50 : 5);
    delivered = await completed(boss, queue);
  }
  const result = { rate: delivered / ((performance.now() - started) / 1000), delivered };
  for (const id of workers) await boss.offWork({ id, wait: true } as never);
  await agent.close();
  return result;
}

/** POSTs to the sink, at most CONCURRENCY in flight, as pg-boss's handler and the ceiling send. */
function poster(sink: Sink) {
  const agent = new Agent({ connections: 64, keepAliveTimeout: 30_000 });
  const sends = new PQueue({ concurrency: CONCURRENCY });
  const post = (body: string) =>
    sends.add(async () => {
      const res = await request(`${sink.url}/bulk`, {
        dispatcher: agent,
        method: "POST",
        headers: { "content-type": "application/json" },
        body,
      });
      await res.body.dump();
      if (res.statusCode >= 300) throw new Error(`HTTP ${res.statusCode}`);
    });
  return { post, agent };
}

/** The same requests with no queue or database at all: the most this machine sends. */
async function ceilingRun(sink: Sink, n: number): Promise<Result> {
  sink.reset();
  const { post, agent } = poster(sink);
  const started = performance.now();
  await Promise.all(Array.from({ length: n }, (_, i) => post(JSON.stringify({ n: i + 1 }))));
  const result = { rate: n / ((performance.now() - started) / 1000), delivered: n };
  await agent.close();
  return result;
}

async function completed(boss: PgBoss, queue: string): Promise<number> {
  const { rows } = await boss
    .getDb()
    .executeSql("select count(*)::int as n from pgboss.job where name = $1 and state = 'completed'", [queue]);
  return (rows[0] as { n: number }).n;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
