/**
 * The validated config written back in the file's own notation, so `config check` prints a valid
 * config: durations are milliseconds inside, but a bare number in the file means seconds.
 */
import { formatDuration } from "./duration.ts";

type Node = Record<string, unknown>;

// Every duration key (test/unit/config-print.test.ts round-trips a config through this).
const DURATIONS: readonly (readonly string[])[] = [
  ["stock", "simulator", "interval"],
  ["stock", "full", "retry"],
  ["server", "inbound", "tolerance"],
  ["notifications", "min_interval"],
  ["delivery", "poll_interval"],
  ["delivery", "lease"],
  ["delivery", "retention"],
  ["delivery", "shutdown_grace"],
];
const SUBSCRIPTION_DURATIONS: readonly (readonly string[])[] = [["timeout"], ["rate_limit", "per"]];

/**
 * A copy of a printable config (the output of `redactConfig`) with every duration as text like
 * "30s" or "1m30s"; everything else is left as it is (sizes are bytes either way).
 */
export function durationsAsText(printable: unknown): unknown {
  const copy = structuredClone(printable) as Node;
  for (const path of DURATIONS) formatAt(copy, path);
  for (const sub of (copy.subscriptions as Node[] | undefined) ?? []) {
    for (const path of SUBSCRIPTION_DURATIONS) formatAt(sub, path);
    if (Array.isArray(sub.retry_intervals)) sub.retry_intervals = sub.retry_intervals.map(text);
  }
  return copy;
}

function formatAt(root: Node, path: readonly string[]): void {
  let node: Node | undefined = root;
  for (const key of path.slice(0, -1)) node = node?.[key] as Node | undefined;
  const last = path.at(-1)!;
  if (node && typeof node[last] === "number") node[last] = text(node[last]);
}

const text = (v: unknown) => (typeof v === "number" ? formatDuration(v) : v);
