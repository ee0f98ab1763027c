/**
 * Work shared across processes (issue #14.3): 20 busy subscriptions, each with a backlog, sent
 * by one `stock-sync`-like engine process, then by four on the same PostgreSQL. Each process
 * takes a fair share of the subscriptions (leases), so four should finish sooner. Both timed
 * from the processes' start to the last delivery recorded as delivered.
 */
import { type EngineProcess, startEngineProcess } from "../test/helpers/engine-process.js";
import { insertBacklog } from "../test/helpers/backlog.js";
import { waitUntil } from "../test/helpers/engine.js";
import { createBenchDb } from "./lib/db.js";
import type { BenchOptions, Row } from "./lib/report.js";
import { startSink } from "./lib/sink.js";
import { progress, repeat, summarize } from "./lib/stats.js";

const SUBSCRIPTIONS = 20;
const PROCESSES = 4;

export async function run(opts: BenchOptions): Promise<Row[]> {
  const perSub = Number(process.env.BENCH_SPREAD_MESSAGES ?? (opts.quick ? 50 : 1500));
  const bench = await createBenchDb("spread", 4);
  const sink = await startSink({ keep: "none" });
  const names = Array.from({ length: SUBSCRIPTIONS }, (_, i) => `busy${i}`);
  const yaml = `delivery:\n  lease: 6s\n  poll_interval: 0.2s\n  shutdown_grace: 1s\nsubscriptions:\n${names
    .map(
      (n) =>
        `  - name: ${n}\n    subjects: ["order.*"]\n    url: "${sink.url}/${n}"\n    concurrency: 8\n    timeout: 5s\n`,
    )
    .join("")}`;
  let tag = 0;
  const timed = async (processes: number) => {
    await bench.db.query("truncate stock_sync.attempts, stock_sync.deliveries, stock_sync.messages cascade");
    await bench.db.query("update stock_sync.subscriptions set lease_owner = null, lease_until = null");
    await bench.db.query("delete from stock_sync.engines");
    const total = perSub * SUBSCRIPTIONS;
    const procs: EngineProcess[] = [];
    try {
      // started and settled first (each holding its share), so the figure is the steady rate
      for (let i = 0; i < processes; i++) procs.push(await startEngineProcess(bench.url, yaml));
      await waitUntil(
        async () => {
          const { rows } = await bench.db.query<{ owners: number; held: number }>(
            `select count(distinct lease_owner)::int as owners, count(lease_owner)::int as held
             from stock_sync.subscriptions where name like 'busy%'`,
          );
          return rows[0]!.owners === processes && rows[0]!.held === SUBSCRIPTIONS;
        },
        60_000,
        "the leases shared out",
      );
      await insertBacklog(bench.db, { tag: `s${++tag}`, n: perSub, subscriptions: names });
      const started = performance.now();
      await waitUntil(
        async () => {
          const { rows } = await bench.db.query<{ n: number }>(
            "select count(*)::int as n from stock_sync.deliveries where status = 'delivered'",
          );
          return rows[0]!.n >= total;
        },
        300_000,
        "the backlog delivered",
      );
      const rate = total / ((performance.now() - started) / 1000);
      const owners = await bench.db.query<{ n: number }>(
        "select count(distinct lease_owner)::int as n from stock_sync.subscriptions where lease_owner is not null",
      );
      progress(
        `spread: ${processes} process(es) ${Math.round(rate)} msg/s, ${owners.rows[0]!.n} lease owners`,
      );
      return rate;
    } finally {
      await Promise.all(procs.map((p) => p.stop("SIGTERM")));
    }
  };
  try {
    const runs = await repeat("spread", { warmups: 0, runs: 3 }, async () => ({
      one: await timed(1),
      four: await timed(PROCESSES),
    }));
    return [
      {
        figure: `${SUBSCRIPTIONS} busy subscriptions × ${perSub} msgs, ${PROCESSES} processes`,
        unit: "msg/s",
        value: summarize(runs.map((r) => r.four)),
        baseline: { label: "one process", unit: "msg/s", value: summarize(runs.map((r) => r.one)) },
        ratio: summarize(runs.map((r) => r.four / r.one)),
        goal: "≥ 2× one process",
        met: summarize(runs.map((r) => r.four / r.one)).median >= 2,
        note: "processes started together; each takes ceil(20/live) leases and hands extras over at its next renewal (lease/3)",
      },
    ];
  } finally {
    await sink.close();
    await bench.drop();
  }
}
