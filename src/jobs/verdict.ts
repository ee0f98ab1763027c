/**
 * What a poll's answer means (pure): done, failed or still running, and the records the OMS
 * rejected. The expressions are evaluated by the caller; this module only interprets values.
 */

/** One record the OMS refused, as `errors` extracted it. */
export type RejectedRow = { sku: string | null; location: string | null; reason: string };

/** Rejected records kept per attempt (the count keeps the total). */
export const REJECTED_CAP = 100;
const REASON_CAP = 500;

export type Verdict = { kind: "done" } | { kind: "failed"; reason: string } | { kind: "pending" };

/**
 * `failed_when` wins over `done_when` (a job both "finished" and "failed" failed); JSONata's
 * truthiness: an empty list, "" and 0 are false.
 */
export function judge(failed: unknown, done: unknown): Verdict["kind"] {
  if (truthy(failed)) return "failed";
  if (truthy(done)) return "done";
  return "pending";
}

export function truthy(v: unknown): boolean {
  if (Array.isArray(v)) return v.some(truthy);
  return v !== undefined && v !== null && v !== false && v !== 0 && v !== "";
}

const text = (v: unknown): string | null =>
  v === undefined || v === null ? null : typeof v === "string" ? v : JSON.stringify(v);

/**
 * The `errors` expression's result as rejected rows: a list of objects (`sku`, `location`,
 * `reason` or `message`), a single object, or plain values (the reason alone). Keeps the first
 * REJECTED_CAP; `total` counts them all.
 */
export function rejectedRows(value: unknown): { rows: RejectedRow[]; total: number } {
  if (value === undefined || value === null) return { rows: [], total: 0 };
  const list = Array.isArray(value) ? value : [value];
  const rows = list.slice(0, REJECTED_CAP).map((v): RejectedRow => {
    if (v && typeof v === "object" && !Array.isArray(v)) {
      const o = v as Record<string, unknown>;
      const { sku, location, reason, message, ...rest } = o;
      const why = text(reason ?? message) ?? (Object.keys(rest).length ? JSON.stringify(rest) : "rejected");
      return { sku: text(sku), location: text(location), reason: why.slice(0, REASON_CAP) };
    }
    return { sku: null, location: null, reason: (text(v) ?? "rejected").slice(0, REASON_CAP) };
  });
  return { rows, total: list.length };
}

/** Whether the job has run out of time: polling since `sinceMs`, `giveUpMs` allowed. */
export const gaveUp = (sinceMs: number, nowMs: number, giveUpMs: number) => nowMs - sinceMs >= giveUpMs;
