import { enqueueRendered } from "../formats/enqueue.js";
import { ownsBody, writeSubscriptionOut } from "../formats/out.js";
import { rowsFromArray } from "../formats/rows.js";
import { renderRun } from "../formats/run.js";
import { memoryStore, skippedText } from "../formats/stock.js";
import { encodeCsv } from "./csv.js";
import { readDelta } from "./delta-read.js";
import { guardZeroed, refuseRun } from "./guard.js";
import { pruneCapture, runFull } from "./snapshot.js";
import {
  type ExportDeps,
  enqueueParts,
  newSnapshotId,
  recordFailure,
  type RunOptions,
  type RunResult,
  stockSubscriptions,
} from "./run.js";
import {
  finishRun,
  readWatermark,
  startRun,
  upsertSent,
  withoutFull,
  writeSourceIdentity,
  writeWatermark,
} from "./state.js";

export { CaptureBrokenError } from "./delta-read.js";

/**
 * A delta: the keys whose sellable quantity differs from what was last sent, with absolute
 * values (0 for keys that are gone). Candidates come from the change-capture rows the previous
 * snapshot could not see, plus keys whose inputs change with time; each is recomputed in one
 * snapshot of the source and compared with the sent state (delta-read.ts). With no change,
 * nothing is sent. A read that fails (capture not installed or broken) is recorded as a failed run.
 */
export async function runDelta(deps: ExportDeps, opts: RunOptions): Promise<RunResult> {
  const newcomers = opts.out || opts.dryRun ? [] : await newcomersOf(deps);
  if (newcomers.length) {
    const full = await runFull(deps, opts);
    const why = `a full instead of a delta: no full was ever sent to ${newcomers.join(", ")}`;
    return { ...full, detail: full.detail ? `${why}; ${full.detail}` : why };
  }
  const started = deps.clock.now();
  const snapshotId = newSnapshotId("delta", started);
  const own = opts.out && opts.subscription && (await ownsBody(deps, opts.subscription, "delta"));
  const watermark = await readWatermark(deps.db);
  const stateful = !opts.out && !opts.dryRun;
  const read = await readDelta(deps, watermark, { stateful, onProgress: opts.onProgress }).catch(
    async (err) => {
      if (stateful) await recordReadFailure(deps, snapshotId, opts.trigger, started, err);
      throw err;
    },
  );
  const rows = read.rows;
  const parts = splitParts(rows, deps.stock.format.part_rows);
  const result = (status: RunResult["status"], runId: number | null, detail = read.detail): RunResult => ({
    kind: "delta",
    status,
    runId,
    snapshotId,
    rows: rows.length,
    parts: rows.length ? parts.length : 0,
    durationMs: deps.clock.now().getTime() - started.getTime(),
    ...(detail ? { detail } : {}),
  });
  opts.onProgress?.(rows.length);
  if (opts.out && own) {
    const run = { kind: "delta" as const, snapshotId, takenAt: read.readAt };
    await writeSubscriptionOut(
      deps,
      opts.subscription!,
      run,
      () => rowsFromArray(rows),
      opts.out,
      memoryStore,
    );
    return result("written", null);
  }
  if (opts.out) {
    opts.out.write(await encodeCsv(rows, { columns: deps.stock.format.columns, gzip: false }));
    return result("written", null);
  }
  if (opts.dryRun) return result("dry-run", null);
  const refusal = opts.force ? null : await guardZeroed(deps, deps.db, read.zeroed);
  if (refusal) {
    const run = { kind: "delta" as const, snapshotId, started, rows: rows.length };
    const runId = await refuseRun(deps, run, refusal, opts.fence);
    return result("refused", runId, refusal);
  }
  const runId = await startRun(deps.db, "delta", opts.trigger, snapshotId, started);
  let skipped: string | null = null;
  await recordFailure(deps, runId, async () => {
    const names = stockSubscriptions(deps.subscriptions, "stock.delta");
    const fields = { kind: "delta" as const, snapshot_id: snapshotId, taken_at: read.readAt.toISOString() };
    const rendered = rows.length
      ? await renderRun(deps, names, fields, () => rowsFromArray(rows), memoryStore)
      : [];
    skipped = skippedText(rendered);
    const detail = [read.detail, skipped].filter(Boolean).join("; ");
    return deps.db.tx(async (tx) => {
      await opts.fence?.(tx);
      if (rows.length) {
        const csv = { columns: deps.stock.format.columns, gzip: deps.stock.format.gzip };
        const bodies = parts.map((p) => () => encodeCsv(p, csv));
        const now = deps.clock.now();
        await enqueueParts(tx, deps, { kind: "delta", snapshotId, runId, now }, bodies);
        await enqueueRendered(tx, rendered, { kind: "delta", snapshotId, runId, now, takenAt: read.readAt });
        await upsertSent(tx, rows, runId);
      }
      await writeWatermark(tx, read.snapshot, read.readAt, runId);
      await writeSourceIdentity(tx, read.identity);
      await finishRun(tx, runId, {
        status: rows.length ? "enqueued" : "empty",
        now: deps.clock.now(),
        rows: rows.length,
        parts: rows.length ? parts.length : 0,
        sourceSnapshot: read.snapshot,
        ...(detail ? { detail } : {}),
      });
    });
  });
  await pruneCapture(deps, read.snapshot, read.generation);
  const detail = [read.detail, skipped].filter(Boolean).join("; ");
  return result(rows.length ? "enqueued" : "empty", runId, detail || undefined);
}

/** A delta that could not read the source is a failed run, with the reason, and an error in the log. */
async function recordReadFailure(
  deps: ExportDeps,
  snapshotId: string,
  trigger: string,
  started: Date,
  err: unknown,
) {
  const detail = String((err as Error).message ?? err);
  try {
    const runId = await startRun(deps.db, "delta", trigger, snapshotId, started);
    await finishRun(deps.db, runId, { status: "failed", now: deps.clock.now(), detail });
  } catch {
    // The state database is down too: the thrown error says enough.
  }
}

/**
 * Stock subscriptions taking both fulls and deltas that never had a full (added to the config
 * since the last full): a delta must not be their first stock message. The full that replaces
 * this delta is their baseline; the others get a full an hour early, which is harmless.
 */
async function newcomersOf(deps: ExportDeps): Promise<string[]> {
  const full = new Set(stockSubscriptions(deps.subscriptions, "stock.full"));
  const both = stockSubscriptions(deps.subscriptions, "stock.delta").filter((s) => full.has(s));
  return withoutFull(deps.db, both);
}

function splitParts<T>(rows: T[], size: number): T[][] {
  const parts: T[][] = [];
  for (let i = 0; i < rows.length; i += size) parts.push(rows.slice(i, i + size));
  return parts.length ? parts : [[]];
}
