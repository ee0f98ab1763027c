import { createReadStream } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { createGunzip } from "node:zlib";
import type { Tx } from "../db/db.js";
import { captureInstalled } from "../inventory/capture.js";
import { advanceAndPrune, pruneChanges, registerConsumer } from "../inventory/capture-consumers.js";
import { notifyOnce } from "../outbox/outcome.js";
import { type FullRead, readFull, type SentFiles } from "./full-read.js";
import {
  type ExportDeps,
  enqueueParts,
  newSnapshotId,
  type RunOptions,
  type RunResult,
  recordFailure,
  stockSubscriptions,
} from "./run.js";
import {
  createFullRows,
  FULL_ROWS,
  finishRun,
  lastDeliveredFullRows,
  replaceSent,
  startRun,
  supersedeStock,
  writeSourceIdentity,
  writeWatermark,
} from "./state.js";

/**
 * A full snapshot: every key's sellable quantity, read in one repeatable-read snapshot of the
 * source and streamed to part files (never all in memory, full-read.ts); then, in one state
 * transaction, older undelivered stock messages are superseded, the parts enqueued, the sent
 * state replaced (the parts COPYed in, then three set-based statements) and the delta watermark
 * set to this snapshot, so nothing falls between this full and the next delta.
 */
export async function runFull(deps: ExportDeps, opts: RunOptions): Promise<RunResult> {
  const started = deps.clock.now();
  const snapshotId = newSnapshotId("full", started);
  const dir = join(deps.tmpDir, snapshotId);
  await mkdir(dir, { recursive: true, mode: 0o700 }); // parts in progress: this user only
  try {
    if (!opts.out && !opts.dryRun) await holdCapture(deps);
    const read = await readFull(deps, opts, dir);
    const result = (status: RunResult["status"], runId: number | null, detail?: string): RunResult => ({
      kind: "full",
      status,
      runId,
      snapshotId,
      rows: read.rows,
      parts: read.parts.length,
      durationMs: deps.clock.now().getTime() - started.getTime(),
      ...(detail ? { detail } : {}),
    });
    if (opts.out) return result("written", null);
    if (opts.dryRun) return result("dry-run", null);
    const refusal = opts.force ? null : await guard(deps, read.rows);
    if (refusal) return result("refused", await refuse(deps, snapshotId, started, read, refusal), refusal);
    const runId = await publishFull(deps, { snapshotId, started, opts, ...read });
    await pruneCapture(deps, read.snapshot, read.generation);
    return result("enqueued", runId);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Refuse a full that would zero the OMS or shrink it by more than the configured ratio. */
async function guard(deps: ExportDeps, rows: number): Promise<string | null> {
  if (rows === 0) return "the source returned no rows: an empty full would zero the OMS";
  const previous = await lastDeliveredFullRows(deps.db);
  if (previous === null || previous === 0) return null;
  const drop = (previous - rows) / previous;
  if (drop <= deps.stock.guard.max_drop_ratio) return null;
  return `rows fell from ${previous} to ${rows} (-${(drop * 100).toFixed(1)}%, more than stock.guard.max_drop_ratio ${deps.stock.guard.max_drop_ratio})`;
}

async function refuse(deps: ExportDeps, snapshotId: string, started: Date, read: FullRead, detail: string) {
  const now = deps.clock.now();
  return deps.db.tx(async (tx) => {
    const runId = await startRun(tx, "full", "guard", snapshotId, started);
    await finishRun(tx, runId, { status: "refused", now, rows: read.rows, detail });
    await notifyOnce(
      tx,
      { all: deps.subscriptions, now, notifyMinIntervalMs: deps.notifyMinIntervalMs },
      "snapshot_refused",
      {
        detail: `full snapshot refused: ${detail}. Check the source, or run \`stock-sync snapshot --force\`.`,
      },
      "stock",
    );
    deps.log.warn({ rows: read.rows, detail }, "full snapshot refused");
    return runId;
  });
}

async function publishFull(
  deps: ExportDeps,
  run: FullRead & { snapshotId: string; started: Date; opts: RunOptions },
): Promise<number> {
  const runId = await startRun(deps.db, "full", run.opts.trigger, run.snapshotId, run.started);
  const now = deps.clock.now();
  await recordFailure(deps, runId, () =>
    deps.db.tx(async (tx) => {
      await run.opts.fence?.(tx);
      await supersedeStock(tx, stockSubscriptions(deps.subscriptions, "stock.full"), now);
      const bodies = run.parts.map((p) => () => readFile(p.path));
      await enqueueParts(tx, deps, { kind: "full", snapshotId: run.snapshotId, runId, now }, bodies);
      await loadSent(tx, run.sent, runId);
      await writeWatermark(tx, run.snapshot, run.readAt, runId);
      await writeSourceIdentity(tx, run.identity);
      await finishRun(tx, runId, {
        status: "enqueued",
        now: deps.clock.now(),
        rows: run.rows,
        parts: run.parts.length,
        sourceSnapshot: run.snapshot,
      });
    }),
  );
  return runId;
}

/** The full's rows, COPYed part by part into a temporary table, then merged into the sent state. */
async function loadSent(tx: Tx, sent: SentFiles, runId: number): Promise<void> {
  await createFullRows(tx, sent.columns);
  for (const file of sent.files) await tx.copyFrom(FULL_ROWS, sent.columns, readPart(file.path, sent.gzip));
  await replaceSent(tx, runId);
}

function readPart(path: string, gzip: boolean): AsyncIterable<Buffer> {
  const file = createReadStream(path);
  if (!gzip) return file;
  const gunzip = createGunzip();
  file.on("error", (err) => gunzip.destroy(err));
  return file.pipe(gunzip);
}

/**
 * After a run committed: this consumer's position moves to its snapshot (with the install
 * generation it read under), and change rows every consumer has read go. Best effort: a failure
 * only keeps rows longer (a consumer that never moves is ignored for pruning after 7 days).
 */
export async function pruneCapture(
  deps: ExportDeps,
  snapshot: string,
  generation: number | null,
): Promise<void> {
  try {
    if (!(await captureInstalled(deps.source))) return;
    // full_diff reads no change rows but prunes them: else a table nobody reads grows for ever.
    if (deps.stock.capture.mode !== "triggers") await pruneChanges(deps.source);
    else await advanceAndPrune(deps.source, deps.stock.capture.consumer, snapshot, generation);
  } catch (err) {
    deps.log.warn({ err }, "could not prune the change-capture table");
  }
}

/** Before a full's read, so no other consumer's prune removes rows the next delta needs. */
async function holdCapture(deps: ExportDeps): Promise<void> {
  if (deps.stock.capture.mode !== "triggers") return;
  try {
    if (await captureInstalled(deps.source)) await registerConsumer(deps.source, deps.stock.capture.consumer);
  } catch (err) {
    deps.log.warn({ err }, "could not register this consumer of the capture table (read-only source?)");
  }
}
