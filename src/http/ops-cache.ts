import type { Clock } from "../clock.js";
import { redactString } from "../config/index.js";

/** How long one read of the status data serves every request: pages and tools poll it. */
export const STATUS_CACHE_MS = 1000;

/**
 * One read shared by every caller for `ms`, and by every caller while it runs: a burst of page
 * loads or scrapes costs one set of queries, not one per request.
 */
export function cached<T>(ms: number, clock: Clock, read: () => Promise<T>): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | null = null;
  return () => {
    const now = clock.now().getTime();
    if (last && now - last.at < ms) return last.value;
    const value = read();
    last = { at: now, value };
    // a failed read is not kept: the next request tries again
    value.catch(() => {
      if (last?.value === value) last = null;
    });
    return value;
  };
}

/**
 * Every `detail` and `last_error` text in status data, redacted: a stock run's detail or a
 * receiver's error can quote a URL, a header or a connection string.
 */
export function redactDetails<T>(value: T): T {
  if (Array.isArray(value)) return value.map(redactDetails) as T;
  if (value === null || typeof value !== "object" || value instanceof Date) return value;
  return Object.fromEntries(
    Object.entries(value).map(([k, v]) => [
      k,
      typeof v === "string" && (k === "detail" || k === "last_error" || k === "error")
        ? redactString(v)
        : redactDetails(v),
    ]),
  ) as T;
}
