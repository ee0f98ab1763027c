import type { Queryable } from "../db/db.js";
import { ConnectorError } from "../errors.ts";
import { matchesAny } from "../subscriptions/subjects.js";
import { writeBodies } from "./enqueue.ts";
import type { Row } from "./fields.ts";
import { type FormatDeps, formatsOf } from "./run.ts";
import { renderFor, type Store } from "./stock.ts";

type OutRun = { kind: "full" | "delta"; snapshotId: string; takenAt: Date };

/**
 * Checks `--subscription NAME` before the run reads anything: an unknown name or one that does
 * not take this kind is an error. True when NAME has its own body; one without receives the
 * shared CSV, which plain `--out` prints.
 */
export async function ownsBody(deps: FormatDeps, name: string, kind: "full" | "delta"): Promise<boolean> {
  const sub = deps.subscriptions.find((s) => s.name === name && !s.internal);
  if (!sub) {
    const names = deps.subscriptions.filter((s) => !s.internal).map((s) => s.name);
    throw new ConnectorError(
      "NOT_FOUND",
      `no subscription "${name}" (configured: ${names.join(", ") || "none"})`,
    );
  }
  if (!matchesAny(sub.subjects, `stock.${kind}`))
    throw new ConnectorError("INVALID_INPUT", `subscription "${name}" does not take stock.${kind}`);
  return (await formatsOf(deps)).stock(name) !== undefined;
}

/**
 * `snapshot|delta --out - --subscription NAME`: what NAME would receive for this run, body after
 * body, through the same rendering as delivery; numbered from its next sequence (read, not taken).
 */
export async function writeSubscriptionOut(
  deps: FormatDeps & { db: Queryable },
  name: string,
  run: OutRun,
  rows: () => AsyncIterable<Row[]>,
  out: NodeJS.WritableStream,
  store: Store,
): Promise<void> {
  const format = (await formatsOf(deps)).stock(name)!;
  const fields = { kind: run.kind, snapshot_id: run.snapshotId, taken_at: run.takenAt.toISOString() };
  const rendered = await renderFor(format, fields, rows(), store);
  await writeBodies(out, rendered, run, await peekSequence(deps.db, name));
}

async function peekSequence(db: Queryable, name: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    "select next_sequence as n from stock_sync.subscriptions where name = $1",
    [name],
  );
  return rows[0] ? Number(rows[0].n) : 1;
}
