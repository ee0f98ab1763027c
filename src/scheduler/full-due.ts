/**
 * The hourly full must not be dropped: pure decisions about a full that is due (what to do
 * after an attempt, when it counts as overdue). The scheduler acts on them.
 */
import type { Config } from "../config/index.js";
import { cronGaps } from "../config/schema.ts";
import type { Skipped } from "../export/exporter.js";
import type { RunResult } from "../export/run.js";

/** A full owed since `since` (a cron fire, or now minus the period at start). */
export type DueFull = { since: Date; trigger: "schedule" | "start" };

export type AfterAttempt =
  /** Sent (here or by another process): nothing owed any more. */
  | { kind: "done" }
  /** A stock run holds the lock here or elsewhere: run right after it. */
  | { kind: "wait"; on: "busy" | "locked"; detail: string }
  /** It failed or was refused: retry after stock.full.retry, and say so. */
  | { kind: "retry"; detail: string; notify: boolean };

/**
 * What to do after trying a due full. A refusal was already notified by the guard, so only
 * errors (and no-result cases the exporter cannot report, like a lost lock) notify here.
 */
export function afterFullAttempt(outcome: RunResult | Skipped | { error: Error }): AfterAttempt {
  if ("error" in outcome) return { kind: "retry", detail: outcome.error.message, notify: true };
  if (outcome.status === "skipped") {
    if (outcome.reason === "done") return { kind: "done" };
    return { kind: "wait", on: outcome.reason, detail: outcome.detail };
  }
  if (outcome.status === "enqueued") return { kind: "done" };
  if (outcome.status === "refused")
    return { kind: "retry", detail: `refused by the shrink guard: ${outcome.detail ?? ""}`, notify: false };
  return {
    kind: "retry",
    detail: `ended ${outcome.status}${outcome.detail ? `: ${outcome.detail}` : ""}`,
    notify: true,
  };
}

/** The longest wait between two fires of the full's schedule (its period), in ms. */
export const fullPeriodMs = (schedule: string) => cronGaps(schedule).max * 1000;

/**
 * A full is overdue when the last successful one started longer ago than its period plus a
 * margin: a quarter of the period (a slow run, a wait for a delta) plus one retry interval.
 * @example fullOverdueAfterMs({ full: { schedule: "0 * * * *", retry: 300_000 } }) // 1h20m
 */
export function fullOverdueAfterMs(stock: Pick<Config["stock"], "full">): number {
  const period = fullPeriodMs(stock.full.schedule);
  return period + period / 4 + stock.full.retry;
}
