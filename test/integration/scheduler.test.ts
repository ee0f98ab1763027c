import { expect, it } from "vitest";
import { systemClock } from "../../src/clock.js";
import type { Db } from "../../src/db/db.js";
import { openPostgres } from "../../src/db/pg.js";
import { createExporter, type Exporter } from "../../src/export/exporter.js";
import type { RunOptions } from "../../src/export/run.js";
import { type Scheduler, startScheduler } from "../../src/scheduler/scheduler.js";
import { describeEachDb } from "../helpers/db.js";
import { quietLog, waitUntil } from "../helpers/engine.js";
import { spyDb } from "../helpers/spy-db.js";
import { STOCK_SUB, stockFixture } from "../helpers/stock.js";

describeEachDb("stock scheduler", (t) => {
  it("two processes started together: one start-up full, each tick run by exactly one, never two runs at once", async () => {
    const yaml = `${STOCK_SUB}stock:\n  full: { schedule: "0 0 1 1 *" }\n  delta: { schedule: "* * * * * *" }\n`;
    const fx = await stockFixture(t().db, yaml);
    // A second "process": its own connection pool where the back end has one.
    const otherDb = t().url ? openPostgres(t().url!, { poolSize: 3 }) : t().db;
    // Every run the schedulers ask for, per trigger and kind: the coordinator's promise is one
    // call per tick across both processes (the stock lock alone would hide a second call).
    const calls: { kind: string; trigger: string; proc: number }[] = [];
    const owners: string[] = []; // each process's claimant id, as its coordinator writes it
    let pending = 0; // scheduler queries in flight (a tick being claimed)
    const exporters: Exporter[] = [];
    const schedulers: Scheduler[] = [];
    const processFor = (db: Db, proc: number) => {
      const exporter = createExporter({ ...fx.deps, db, source: db });
      exporters.push(exporter);
      const counted: Exporter = {
        ...exporter,
        run: (kind, opts: RunOptions) => {
          calls.push({ kind, trigger: opts.trigger, proc });
          return exporter.run(kind, opts);
        },
      };
      const watched = spyDb(db, {
        before: (text, values) => {
          if (text.includes("insert into stock_sync.cron_runs")) owners[proc] = String(values![1]);
          pending++;
          return undefined;
        },
        after: () => {
          pending--;
        },
      });
      return startScheduler(
        { db: watched, clock: systemClock, log: quietLog, exporter: counted },
        fx.config.stock,
      );
    };
    try {
      schedulers.push(...(await Promise.all([t().db, otherDb].map((db, i) => processFor(db, i)))));
      await waitUntil(
        async () => {
          const { rows } = await t().db.query<{ n: number }>(
            "select count(*)::int as n from stock_sync.stock_runs where kind = 'delta'",
          );
          return rows[0]!.n >= 3;
        },
        30_000,
        "three delta runs",
      );
    } finally {
      for (const s of schedulers) await s.stop();
    }
    // A tick being claimed when the schedulers stopped still runs: let it, then the runs end.
    await waitUntil(async () => pending === 0, 10_000, "no tick being claimed");
    await Promise.all(exporters.map((e) => e.idle()));
    const { rows: runs } = await t().db.query<{
      kind: string;
      started_at: Date;
      finished_at: Date | null;
      trigger: string;
    }>("select kind, started_at, finished_at, trigger from stock_sync.stock_runs order by started_at");
    // start-up: each process owes the full (neither had seen one) and asks until the stock lock
    // lets it (issue 12.1: a due full is never dropped); exactly one full was sent
    const startCalls = calls.filter((c) => c.trigger === "start");
    expect(startCalls.length).toBeGreaterThanOrEqual(2);
    expect(new Set(startCalls.map((c) => c.kind))).toEqual(new Set(["full"]));
    expect(runs.filter((r) => r.trigger === "start").map((r) => r.kind)).toEqual(["full"]);
    // ticks: one call per claimed tick, by one process only
    const { rows: ticks } = await t().db.query<{ key: string; by: string }>(
      "select key, claimed_by as by from stock_sync.cron_runs where key like 'stock-delta:%'",
    );
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    const deltaCalls = calls.filter((c) => c.trigger === "schedule" && c.kind === "delta");
    // Never more calls than claimed ticks (each tick run by one process only). A tick may make
    // no call at all: one that comes while the start-up full is owed is folded into it (#12.1).
    expect(deltaCalls.length).toBeLessThanOrEqual(ticks.length);
    expect(deltaCalls.length).toBeGreaterThanOrEqual(2);
    // and by the process that claimed the tick, never by the one that found it taken
    for (const proc of [0, 1])
      expect(deltaCalls.filter((c) => c.proc === proc).length, `process ${proc}`).toBeLessThanOrEqual(
        ticks.filter((k) => k.by === owners[proc]).length,
      );
    expect(calls.filter((c) => c.trigger === "schedule" && c.kind === "full")).toEqual([]);
    // a run is a call that was not skipped: never more than the calls
    expect(runs.filter((r) => r.kind === "delta").length).toBeLessThanOrEqual(deltaCalls.length);
    for (const r of runs) expect(r.finished_at).not.toBeNull();
    for (let i = 1; i < runs.length; i++) {
      expect(runs[i]!.started_at.getTime()).toBeGreaterThanOrEqual(runs[i - 1]!.finished_at!.getTime()); // no overlap
    }
    if (otherDb !== t().db) await otherDb.close();
  });
});
