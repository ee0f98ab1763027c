import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import cron, { type ScheduledTask } from "node-cron";
import type { Clock } from "../clock.js";
import type { Config } from "../config/index.js";
import type { Db } from "../db/db.js";
import type { Exporter } from "../export/exporter.js";
import { lastFullAt } from "../export/state.js";
import type { Logger } from "../log.js";
import { pgRunCoordinator } from "./coordinator.js";

export type SchedulerDeps = { db: Db; clock: Clock; log: Logger; exporter: Exporter };

export type Scheduler = {
  /** Next fire times, for /status. */
  next(): { full: Date | null; delta: Date | null };
  stop(): Promise<void>;
};

/**
 * Full and delta on their cron schedules, each tick run once across processes (run coordinator)
 * and never two stock runs at once (the exporter skips a tick that finds one busy, and logs it).
 * At start, a full runs at once when none was ever enqueued or the last is older than its period.
 */
export async function startScheduler(deps: SchedulerDeps, stock: Config["stock"]): Promise<Scheduler> {
  const owner = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  const runCoordinator = pgRunCoordinator(deps.db, owner, () => deps.clock.now());
  const tick = (kind: "full" | "delta") => async () => {
    try {
      const result = await deps.exporter.run(kind, { trigger: "schedule" });
      if (result.status === "skipped") deps.log.info({ kind, reason: result.detail }, "stock tick skipped");
    } catch (err) {
      deps.log.error({ err, kind }, `scheduled stock ${kind} failed`);
      // Broken change capture (delta-read.ts): a full keeps the OMS right until it is repaired.
      if (kind === "delta" && (err as { needsFull?: boolean }).needsFull) await tick("full")();
    }
  };
  const options = (name: string) => ({ name, distributed: true, runCoordinator, noOverlap: true });
  const tasks: Record<"full" | "delta", ScheduledTask> = {
    full: cron.schedule(stock.full.schedule, tick("full"), options("stock-full")),
    delta: cron.schedule(stock.delta.schedule, tick("delta"), options("stock-delta")),
  };
  const [a, b] = tasks.full.getNextRuns(2);
  const period = a && b ? b.getTime() - a.getTime() : 60 * 60 * 1000;
  const last = await lastFullAt(deps.db);
  if (!last || deps.clock.now().getTime() - last.getTime() > period) {
    void deps.exporter
      .run("full", { trigger: "start", unlessFullWithinMs: period })
      .catch((err) => deps.log.error({ err }, "start-up full snapshot failed"));
  }
  return {
    next: () => ({ full: tasks.full.getNextRun(), delta: tasks.delta.getNextRun() }),
    async stop() {
      await Promise.all([tasks.full.destroy(), tasks.delta.destroy()]);
    },
  };
}
