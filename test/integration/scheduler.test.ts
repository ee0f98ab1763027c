import { expect, it } from "vitest";
import { systemClock } from "../../src/clock.js";
import { openPostgres } from "../../src/db/pg.js";
import { createExporter } from "../../src/export/exporter.js";
import { type Scheduler, startScheduler } from "../../src/scheduler/scheduler.js";
import { describeEachDb } from "../helpers/db.js";
import { quietLog, waitUntil } from "../helpers/engine.js";
import { STOCK_SUB, stockFixture } from "../helpers/stock.js";

describeEachDb("stock scheduler", (t) => {
  it("runs a full at start, each delta tick once across two processes, and never two runs at once", async () => {
    const yaml = `${STOCK_SUB}stock:\n  full: { schedule: "0 0 1 1 *" }\n  delta: { schedule: "* * * * * *" }\n`;
    const fx = await stockFixture(t().db, yaml);
    // A second "process": its own connection pool where the back end has one.
    const otherDb = t().url ? openPostgres(t().url!, { poolSize: 3 }) : t().db;
    const schedulers: Scheduler[] = [];
    try {
      for (const db of [t().db, otherDb]) {
        const exporter = createExporter({ ...fx.deps, db, source: db });
        schedulers.push(
          await startScheduler({ db, clock: systemClock, log: quietLog, exporter }, fx.config.stock),
        );
      }
      await waitUntil(
        async () => {
          const { rows } = await t().db.query<{ n: number }>(
            "select count(*)::int as n from stock_sync.stock_runs where kind = 'delta'",
          );
          return rows[0]!.n >= 3;
        },
        15_000,
        "three delta ticks",
      );
    } finally {
      for (const s of schedulers) await s.stop();
    }
    await new Promise((r) => setTimeout(r, 300)); // let a run that had started finish
    const { rows: runs } = await t().db.query<{
      kind: string;
      started_at: Date;
      finished_at: Date | null;
      trigger: string;
    }>("select kind, started_at, finished_at, trigger from stock_sync.stock_runs order by started_at");
    expect(runs.filter((r) => r.kind === "full" && r.trigger === "start").length).toBeGreaterThanOrEqual(1);
    const { rows: ticks } = await t().db.query<{ key: string }>(
      "select key from stock_sync.cron_runs where key like '%delta%'",
    );
    const deltas = runs.filter((r) => r.kind === "delta");
    expect(deltas.length).toBeLessThanOrEqual(ticks.length); // each tick claimed by one process only
    for (let i = 1; i < runs.length; i++) {
      expect(runs[i]!.started_at.getTime()).toBeGreaterThanOrEqual(runs[i - 1]!.finished_at!.getTime()); // no overlap
    }
    if (otherDb !== t().db) await otherDb.close();
  });
});
