/**
 * Outbox delivery: a backlog of 50,000 messages to one subscription (no rate limit, attempts
 * recorded) and a receiver answering 204, against pg-boss 10 sending the same 50,000 to the same
 * receiver from the same PostgreSQL. Both are timed from the moment their workers start until
 * the last message is delivered and recorded as such. In the same runs: the same 50,000 under
 * `ordering: key` over 10,000 keys, and spread over 20 subscriptions (#16: no per-key or
 * per-subscription collapse), and the bare HTTP ceiling. Each figure says where its time went
 * (database, HTTP, event loop: lib/timing.ts).
 */
import PgBoss from "pg-boss";
import PQueue from "p-queue";
import { Agent, request } from "undici";
import { loadConfig } from "../src/config/index.js";
import type { Db } from "../src/db/db.js";
import { insertBacklog } from "../test/helpers/backlog.js";
import { startEngine } from "../test/helpers/engine.js";
import type { Sender } from "../src/outbox/send.js";
import { createBenchDb } from "./lib/db.js";
import { floorRun } from "./lib/floor.js";
import {
  type Breakdown,
  BusyClock,
  cpuSince,
  describe,
  describeKinds,
  serverCpu,
  timedDb,
  watch,
} from "./lib/timing.js";
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
/** The `key` figure: ordering keys the messages are spread over (order ids, say). */
const KEYS = 10_000;
/** The shared-load figure: subscriptions, each with an equal part of the messages. */
const SPREAD = 20;
/** …each with this concurrency (as bench/spread.ts): 160 requests in flight in all. */
const SPREAD_CONCURRENCY = 8;
/**
 * pg-boss settings, the best of a sweep on this machine (docs/benchmarks.md): v10 polls at least
 * every 0.5 s and waits out the rest of the interval after a short batch, so only batches that
 * take longer than that to send (≥ 5,000 jobs at this speed) keep it busy; a second worker
 * fetches while the first one sends. One fetch and one completion then serve 5,000 jobs.
 */
/**
 * The sides to run, for investigations (`BENCH_DELIVERY_SIDES=engine,floor`): rows whose two
 * sides did not both run are left out. Default: all.
 */
const SIDES = new Set(
  (process.env.BENCH_DELIVERY_SIDES ?? "engine,pgboss,ceiling,floor,key,spread")
    .split(",")
    .map((s) => s.trim()),
);
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
      const run: Partial<Run> = {};
      if (SIDES.has("engine")) run.engine = await engineRun(bench.db, sink, n, "none");
      if (SIDES.has("pgboss")) run.pgboss = await pgBossRun(boss, bench.db, sink, n);
      if (SIDES.has("ceiling")) run.ceiling = await ceilingRun(sink, n);
      if (SIDES.has("floor")) run.floor = await floorSide(bench.db, sink, n);
      if (SIDES.has("key")) run.key = await engineRun(bench.db, sink, n, "key");
      if (SIDES.has("spread")) run.spread = await engineRun(bench.db, sink, n, "spread");
      return run;
    });
    const has = (k: Side) => SIDES.has(k);
    const rates = (k: Side) => summarize(runs.map((r) => r[k]!.rate));
    const ratio = (k: Side, base: Side) => summarize(runs.map((r) => r[k]!.rate / r[base]!.rate));
    const msgs = total.toLocaleString("en-US");
    const noneLabel = "ordering none, one subscription";
    const pgbossLabel = `pg-boss (batch ${PGBOSS.batchSize} × ${PGBOSS.workers} workers)`;
    const ceilingLabel = `the same ${CONCURRENCY}-concurrent undici POSTs, no database`;
    const floorLabel = "the ceiling + the minimum durable record";
    const row = (
      side: Side,
      base: Side,
      figure: string,
      baseLabel: string,
      goal: { text: string; min: number } | null,
      note: () => string,
    ): Row | null => {
      if (!has(side) || !has(base)) return null;
      const r = ratio(side, base);
      return {
        figure,
        unit: "msg/s",
        value: rates(side),
        baseline: { label: baseLabel, unit: base === "ceiling" ? "req/s" : "msg/s", value: rates(base) },
        ratio: r,
        goal: goal?.text ?? "(info)",
        met: goal ? r.median >= goal.min : null,
        note: note(),
      };
    };
    const rows = [
      row(
        "engine",
        "pgboss",
        `delivery ${msgs} msgs, concurrency ${CONCURRENCY}`,
        pgbossLabel,
        { text: "≥ 1.1× pg-boss", min: 1.1 },
        () => notes(runs, "engine", total, has("pgboss") ? `pg-boss: ${where(runs, "pgboss")}` : ""),
      ),
      row(
        "engine",
        "ceiling",
        `delivery ${msgs} msgs vs the HTTP ceiling`,
        ceilingLabel,
        { text: "≥ 0.8× ceiling", min: 0.8 },
        () => `ceiling: ${where(runs, "ceiling")}`,
      ),
      row(
        "engine",
        "floor",
        `delivery ${msgs} msgs vs the floor (ceiling + minimum durable record)`,
        floorLabel,
        null,
        () => `engine: ${where(runs, "engine")}; floor: ${notes(runs, "floor", total)}`,
      ),
      row(
        "floor",
        "pgboss",
        `the floor (ceiling + minimum durable record) vs pg-boss`,
        pgbossLabel,
        null,
        () => "",
      ),
      row(
        "floor",
        "ceiling",
        `the floor (ceiling + minimum durable record) vs the HTTP ceiling`,
        ceilingLabel,
        null,
        () => "",
      ),
      row(
        "key",
        "engine",
        `delivery ${msgs} msgs, ordering key over ${KEYS.toLocaleString("en-US")} keys`,
        noneLabel,
        { text: "≥ 0.7× none", min: 0.7 },
        () => notes(runs, "key", total),
      ),
      row(
        "spread",
        "engine",
        `delivery ${msgs} msgs over ${SPREAD} subscriptions (concurrency ${SPREAD_CONCURRENCY} each)`,
        noneLabel,
        { text: "≥ 0.7× none", min: 0.7 },
        () => notes(runs, "spread", total),
      ),
    ];
    // a side run alone (an investigation) still says what it measured
    if (rows.every((r) => r === null))
      return [...SIDES].map((side) => ({
        figure: `delivery ${msgs} msgs: ${side}`,
        unit: "msg/s",
        value: rates(side as Side),
        baseline: null,
        ratio: null,
        goal: "(info)",
        met: null,
        note: notes(runs, side as Side, total),
      }));
    return rows.filter((r): r is Row => r !== null);
  } finally {
    await boss.stop({ graceful: false, wait: true }).catch(() => undefined);
    await sink.close();
    await bench.drop();
  }
}

type Shape = "none" | "key" | "spread";

/** A fresh backlog each run, as the outbox holds it after a burst of events. */
async function freshBacklog(db: Db, n: number, shape: Shape): Promise<void> {
  // cascade: the import jobs (0012) refer to deliveries too
  await db.query("truncate stock_sync.attempts, stock_sync.deliveries, stock_sync.messages cascade");
  if (shape === "spread") {
    // each message to one of the subscriptions, in turns: n in all, as in the other figures
    for (const [i, name] of subscriptionNames(shape).entries()) {
      const part = Math.floor(n / SPREAD) + (i < n % SPREAD ? 1 : 0);
      await insertBacklog(db, { tag: `s${i}`, n: part, subscriptions: [name] });
    }
  } else {
    const keys = shape === "key" ? KEYS : undefined;
    await insertBacklog(db, { tag: "bulk", n, subscriptions: ["bulk"], ...(keys ? { keys } : {}) });
  }
  await db.query("vacuum analyze stock_sync.messages, stock_sync.deliveries, stock_sync.delivery_heads");
}

const subscriptionNames = (shape: Shape) =>
  shape === "spread" ? Array.from({ length: SPREAD }, (_, i) => `bulk${i}`) : ["bulk"];

const engineYaml = (url: string, shape: Shape) =>
  `subscriptions:\n${subscriptionNames(shape)
    .map(
      (name) => `  - name: ${name}
    subjects: ["order.*"]
    url: "${url}/${name}"
    concurrency: ${shape === "spread" ? SPREAD_CONCURRENCY : CONCURRENCY}
    ordering: ${shape === "key" ? "key" : "none"}
    timeout: 5s
`,
    )
    .join("")}`;

type Result = { rate: number; delivered: number; where: Breakdown };
type Side = "engine" | "pgboss" | "ceiling" | "floor" | "key" | "spread";
type Run = Partial<Record<Side, Result>>;

/** The database as the engine uses it, and its HTTP sender, each timed. */
const clocks = { db: new BusyClock(), http: new BusyClock() };

const timedSender = (sender: Sender): Sender => ({
  async send(req) {
    const at = clocks.http.start();
    try {
      return await sender.send(req);
    } finally {
      clocks.http.end(at);
    }
  },
  close: () => sender.close(),
});

async function engineRun(db: Db, sink: Sink, n: number, shape: Shape): Promise<Result> {
  await freshBacklog(db, n, shape);
  sink.reset();
  let delivered = 0;
  let finished: () => void = () => undefined;
  const done = new Promise<void>((r) => (finished = r));
  const server = await serverCpu(db);
  const cpu0 = process.cpuUsage();
  const watching = watch(clocks);
  const started = performance.now();
  const engine = await startEngine(
    timedDb(db, clocks.db),
    loadConfig(engineYaml(sink.url, shape), {}).config,
    {
      onAttempt: (_s, _r, outcome) => {
        if (outcome === "delivered" && ++delivered === n) finished();
      },
      wrapSender: timedSender,
    },
  );
  await Promise.race([done, sleep(CAP_MS)]);
  const rate = delivered / ((performance.now() - started) / 1000);
  const cpu = { processMs: cpuSince(cpu0), serverMs: await server.stop() };
  const result = { rate, delivered, where: { ...watching.stop(), cpu, items: delivered } };
  statements(`engine ${shape}`, result);
  await engine.stop();
  return result;
}

/** For investigations (BENCH_DB_STATEMENTS=1): each run's statements by kind, on stderr. */
function statements(side: string, result: Result): Result {
  if (process.env.BENCH_DB_STATEMENTS)
    progress(
      `${side}: ${Math.round(result.rate)} msg/s, ${describe(result.where)}\n${describeKinds(clocks.db, result.delivered)}`,
    );
  return result;
}

/** The breakdown of the run with the median rate of this side. */
function where(runs: Run[], side: Side): string {
  const sorted = [...runs].sort((a, b) => a[side]!.rate - b[side]!.rate);
  return describe(sorted[Math.floor(sorted.length / 2)]![side]!.where);
}

/** Where the time went, and whether a run stopped at the cap. */
function notes(runs: Run[], side: Side, total: number, extra = ""): string {
  const capped = runs.some((r) => r[side]!.delivered < total)
    ? `stopped at ${CAP_MS / 1000} s with ${runs.map((r) => r[side]!.delivered.toLocaleString("en-US")).join(" / ")} delivered; `
    : "";
  return `${capped}${where(runs, side)}${extra ? `; ${extra}` : ""}`;
}

let queues = 0;

async function pgBossRun(boss: PgBoss, db: Db, sink: Sink, n: number): Promise<Result> {
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
  const server = await serverCpu(db);
  const cpu0 = process.cpuUsage();
  const watching = watch({ http: clocks.http });
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
  const rate = delivered / ((performance.now() - started) / 1000);
  const cpu = { processMs: cpuSince(cpu0), serverMs: await server.stop() };
  const result = { rate, delivered, where: { ...watching.stop(), cpu, items: delivered } };
  for (const id of workers) await boss.offWork({ id, wait: true } as never);
  await agent.close();
  return result;
}

/** POSTs to the sink, at most CONCURRENCY in flight, as pg-boss's handler and the ceiling send. */
function poster(sink: Sink) {
  const agent = new Agent({ connections: 64, keepAliveTimeout: 30_000 });
  const sends = new PQueue({ concurrency: CONCURRENCY });
  const post = (body: string | Uint8Array) =>
    sends.add(async () => {
      const at = clocks.http.start();
      try {
        const res = await request(`${sink.url}/bulk`, {
          dispatcher: agent,
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
        });
        await res.body.dump();
        if (res.statusCode >= 300) throw new Error(`HTTP ${res.statusCode}`);
        return res.statusCode;
      } finally {
        clocks.http.end(at);
      }
    });
  return { post, agent };
}

/** The same requests with no queue or database at all: the most this machine sends. */
async function ceilingRun(sink: Sink, n: number): Promise<Result> {
  sink.reset();
  const { post, agent } = poster(sink);
  const cpu0 = process.cpuUsage();
  const watching = watch({ http: clocks.http });
  const started = performance.now();
  await Promise.all(Array.from({ length: n }, (_, i) => post(JSON.stringify({ n: i + 1 }))));
  const rate = n / ((performance.now() - started) / 1000);
  const cpu = { processMs: cpuSince(cpu0), serverMs: null };
  const result = { rate, delivered: n, where: { ...watching.stop(), cpu, items: n } };
  await agent.close();
  return result;
}

/** The floor (lib/floor.ts): the ceiling's requests for the `none` backlog, each recorded. */
async function floorSide(db: Db, sink: Sink, n: number): Promise<Result> {
  await freshBacklog(db, n, "none");
  sink.reset();
  const { post, agent } = poster(sink);
  try {
    return statements("floor", await floorRun(db, clocks, "bulk", n, CONCURRENCY, post));
  } finally {
    await agent.close();
  }
}

async function completed(boss: PgBoss, queue: string): Promise<number> {
  const { rows } = await boss
    .getDb()
    .executeSql("select count(*)::int as n from pgboss.job where name = $1 and state = 'completed'", [queue]);
  return (rows[0] as { n: number }).n;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
