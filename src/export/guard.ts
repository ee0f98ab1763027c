import type { Queryable } from "../db/db.js";
import { notifyOnce } from "../outbox/outcome.js";
import type { ExportDeps, RunOptions } from "./run.js";
import { finishRun, lastDeliveredFullRows, type RunKind, startRun } from "./state.js";

/**
 * The shrink guard (stock.guard.max_drop_ratio): an emptied or half-loaded source must not zero
 * the stock at the OMS, whichever run would carry the drop. The reference is the newest full
 * whose every part was delivered. Pure decisions first, then the refusal's I/O.
 */

/** Why a full of `rows` rows must not be sent, or null. */
export function fullRefusal(rows: number, previous: number | null, ratio: number): string | null {
  if (rows === 0) return "the source returned no rows: an empty full would zero the OMS";
  if (previous === null || previous === 0) return null;
  const drop = (previous - rows) / previous;
  if (drop <= ratio) return null;
  return `rows fell from ${previous} to ${rows} (-${pct(drop)}, more than stock.guard.max_drop_ratio ${ratio})`;
}

/**
 * Why a run (delta or full) that turns `zeroed` keys from a positive quantity to 0 (removed from
 * the source, or present at 0) must not be sent, or null. Measured against the last delivered
 * full's rows, as the row count is: the same share refuses the same drop whichever run carries it.
 */
export function zeroRefusal(zeroed: number, previous: number | null, ratio: number): string | null {
  if (previous === null || previous === 0 || zeroed === 0) return null;
  const share = zeroed / previous;
  if (share <= ratio) return null;
  return `it would zero ${zeroed} keys, ${pct(share)} of the ${previous} rows of the last delivered full (more than stock.guard.max_drop_ratio ${ratio})`;
}

const pct = (share: number) => `${(share * 100).toFixed(1)}%`;

export async function guardFull(deps: ExportDeps, rows: number): Promise<string | null> {
  return fullRefusal(rows, await lastDeliveredFullRows(deps.db), deps.stock.guard.max_drop_ratio);
}

/** For a delta, and for a full once its rows are compared with the sent state. */
export async function guardZeroed(deps: ExportDeps, db: Queryable, zeroed: number): Promise<string | null> {
  if (zeroed === 0) return null;
  return zeroRefusal(zeroed, await lastDeliveredFullRows(db), deps.stock.guard.max_drop_ratio);
}

/** Thrown inside a full's state transaction to roll it back as refused. */
export class Refused extends Error {
  constructor(readonly detail: string) {
    super(detail);
    this.name = "Refused";
  }
}

const FORCE = { full: "stock-sync snapshot --force", delta: "stock-sync delta --force" } as const;
const WHAT = { full: "full snapshot", delta: "stock delta" } as const;

/**
 * Records a refused run and notifies (ops.snapshot.refused, rate-limited). Nothing is enqueued
 * and neither the sent state nor the watermark moves, so a refused delta is held: the next one
 * computes the same changes again, and goes out once the source recovers or with --force.
 * Behind the stock lock's fence, as every state write of a run is.
 */
export async function refuseRun(
  deps: ExportDeps,
  run: { kind: RunKind; snapshotId: string; started: Date; rows: number; runId?: number },
  detail: string,
  fence?: RunOptions["fence"],
): Promise<number> {
  const now = deps.clock.now();
  return deps.db.tx(async (tx) => {
    await fence?.(tx);
    const runId = run.runId ?? (await startRun(tx, run.kind, "guard", run.snapshotId, run.started));
    await finishRun(tx, runId, { status: "refused", now, rows: run.rows, detail });
    await notifyOnce(
      tx,
      { all: deps.subscriptions, now, notifyMinIntervalMs: deps.notifyMinIntervalMs },
      "snapshot_refused",
      {
        detail: `${WHAT[run.kind]} refused: ${detail}. Check the source, or run \`${FORCE[run.kind]}\`.`,
      },
      "stock",
    );
    deps.log.warn({ rows: run.rows, detail }, `${WHAT[run.kind]} refused`);
    return runId;
  });
}
