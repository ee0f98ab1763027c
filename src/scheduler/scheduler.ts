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
import { afterFullAttempt, type DueFull, fullPeriodMs } from "./full-due.js";

export type SchedulerDeps = {
  db: Db;
  clock: Clock;
  log: Logger;
  exporter: Exporter;
  /** Tells the operators that a due full did not run (ops.snapshot.failed). */
  notify?: (detail: string) => Promise<void>;
};

export type Scheduler = {
  /** Next fire times, for /status. */
  next(): { full: Date | null; delta: Date | null };
  stop(): Promise<void>;
};

/** How often a due full looks again at a stock lock held by another process. */
const LOCK_POLL_MS = 500;

/**
 * Full and delta on their cron schedules. A delta tick runs once across processes (run
 * coordinator). A full tick makes a full due in every process; whichever gets the stock lock
 * first sends it and the others find it sent (checked under the lock), so the full is never
 * dropped: it waits for a delta holding the lock and runs right after it, and a full that
 * failed or was refused is retried every stock.full.retry (a warning, and a notification).
 * A delta due while a full is due or running is folded into it (the full resets everything).
 * At start, a full is due when none was enqueued within its period.
 */
export async function startScheduler(deps: SchedulerDeps, stock: Config["stock"]): Promise<Scheduler> {
  const owner = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  const runCoordinator = pgRunCoordinator(deps.db, owner, () => deps.clock.now());
  const stopped = new AbortController();
  let due: DueFull | null = null;
  let driving: Promise<void> | null = null;
  /** Set while a failed full waits for its retry: deltas go on meanwhile. */
  let backingOff = false;

  const oweFull = (full: DueFull) => {
    if (!due || due.since < full.since) due = full;
    driving ??= driveFull().finally(() => (driving = null));
  };

  async function driveFull(): Promise<void> {
    let waitingSince: number | null = null;
    let warnedWait = false;
    while (due && !stopped.signal.aborted) {
      const owed = due;
      const decision = afterFullAttempt(
        await deps.exporter
          .run("full", { trigger: owed.trigger, unlessFullSince: owed.since })
          .catch((error: Error) => ({ error })),
      );
      if (decision.kind === "done") {
        if (due === owed) due = null; // a newer tick may have made another full due meanwhile
        continue;
      }
      if (decision.kind === "wait") {
        waitingSince ??= deps.clock.now().getTime();
        if (!warnedWait && deps.clock.now().getTime() - waitingSince >= stock.full.retry) {
          warnedWait = true;
          await complain(
            `it has waited for the stock lock since ${new Date(waitingSince).toISOString()}`,
            true,
          );
        }
        if (decision.on === "busy") await deps.exporter.idle();
        else await sleep(LOCK_POLL_MS, stopped.signal);
        continue;
      }
      waitingSince = null;
      await complain(`${decision.detail}; retrying in ${stock.full.retry / 1000}s`, decision.notify);
      backingOff = true;
      await sleep(stock.full.retry, stopped.signal);
      backingOff = false;
    }
  }

  async function complain(detail: string, notify: boolean): Promise<void> {
    const text = `the full stock snapshot due since ${due?.since.toISOString()} did not run: ${detail}`;
    deps.log.warn({ kind: "full" }, text);
    if (notify && deps.notify)
      await deps.notify(text).catch((err) => deps.log.warn({ err }, "could not notify"));
  }

  async function deltaTick(): Promise<void> {
    // The full that is due (or running) resets everything: this delta is folded into it.
    if ((due && !backingOff) || deps.exporter.busy() === "full") {
      deps.log.info({ kind: "delta" }, "delta tick folded into the due full snapshot");
      return;
    }
    try {
      const result = await deps.exporter.run("delta", { trigger: "schedule" });
      if (result.status === "skipped")
        deps.log.info({ kind: "delta", reason: result.detail }, "stock tick skipped");
    } catch (err) {
      deps.log.error({ err, kind: "delta" }, "scheduled stock delta failed");
      // Broken change capture (delta-read.ts): a full keeps the OMS right until it is repaired.
      if ((err as { needsFull?: boolean }).needsFull)
        oweFull({ since: deps.clock.now(), trigger: "schedule" });
    }
  }

  const tasks: Record<"full" | "delta", ScheduledTask> = {
    // Not coordinated: every process owes the full, and the stock lock picks who sends it.
    full: cron.schedule(stock.full.schedule, (ctx) => oweFull({ since: ctx.date, trigger: "schedule" }), {
      name: "stock-full",
    }),
    delta: cron.schedule(stock.delta.schedule, deltaTick, {
      name: "stock-delta",
      distributed: true,
      runCoordinator,
      noOverlap: true,
    }),
  };
  const period = fullPeriodMs(stock.full.schedule);
  const last = await lastFullAt(deps.db);
  const now = deps.clock.now();
  if (!last || now.getTime() - last.getTime() > period) {
    oweFull({ since: new Date(now.getTime() - period), trigger: "start" });
  }
  return {
    next: () => ({ full: tasks.full.getNextRun(), delta: tasks.delta.getNextRun() }),
    async stop() {
      stopped.abort();
      await Promise.all([tasks.full.destroy(), tasks.delta.destroy()]);
      await driving;
    },
  };
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}
