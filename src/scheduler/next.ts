import cron from "node-cron";
import type { Config } from "../config/index.js";

/**
 * When the configured schedules fire next, computed from the config alone: what `status` shows
 * from the command line, where no scheduler runs. Same cron reading (local time) as the scheduler.
 */
export function nextFireTimes(stock: Config["stock"]): { full: Date | null; delta: Date | null } {
  return { full: nextFire(stock.full.schedule), delta: nextFire(stock.delta.schedule) };
}

function nextFire(expression: string): Date | null {
  // A task that is never started: it only reads the expression (getNextRun needs a running one).
  const task = cron.createTask(expression, () => undefined);
  try {
    return task.getNextRuns(1)[0] ?? null;
  } finally {
    void task.destroy();
  }
}
