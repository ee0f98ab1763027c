import { createReadStream } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { createGunzip } from "node:zlib";
import type { Tx } from "../db/db.js";
import { captureInstalled } from "../inventory/capture.js";
import { advanceAndPrune, pruneChanges, registerConsumer } from "../inventory/capture-consumers.js";
import { enqueueRendered } from "../formats/enqueue.js";
import { ownsBody, writeSubscriptionOut } from "../formats/out.js";
import { rowsFromFiles } from "../formats/rows.js";
import { renderRun } from "../formats/run.js";
import { fileStore, skippedText } from "../formats/stock.js";
import { type FullRead, readFull, type SentFiles } from "./full-read.js";
import { guardFull, guardZeroed, Refused, refuseRun } from "./guard.js";
import { phaseTimer } from "./phases.js";
import { canLoadWhileReading, openSentLoad, type SentLoad } from "./sent-load.js";
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
  applySent,
  createFullRows,
  diffSent,
  FULL_ROWS,
  fastToast,
  finishRun,
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
  const timer = phaseTimer();
  let load: SentLoad | null = null;
  // Stateful runs on a real server load the sent state while reading (sent-load.ts).
  const openLoad =
    !opts.out && !opts.dryRun && canLoadWhileReading(deps)
      ? async (columns: readonly string[]) => (load = await openSentLoad(deps.db, columns))
      : undefined;
  try {
    if (!opts.out && !opts.dryRun) await holdCapture(deps);
    // --out --subscription: that subscription's bodies, rendered from the parts read as usual
    const own =
      opts.out && opts.subscription && (await ownsBody(deps, opts.subscription, "full"))
        ? opts.out
        : undefined;
    const read = await readFull(deps, own ? { ...opts, out: undefined } : opts, dir, openLoad);
    timer.mark("read");
    const result = (status: RunResult["status"], runId: number | null, detail?: string): RunResult => ({
      kind: "full",
      status,
      runId,
      snapshotId,
      rows: read.rows,
      parts: read.parts.length,
      durationMs: deps.clock.now().getTime() - started.getTime(),
      ...(detail ? { detail } : {}),
      phases: timer.phases,
    });
    if (own) {
      const run = { kind: "full" as const, snapshotId, takenAt: read.readAt };
      await writeSubscriptionOut(
        deps,
        opts.subscription!,
        run,
        () => rowsFromFiles(read.sent),
        own,
        fileStore(dir),
      );
    }
    if (opts.out) return result("written", null);
    if (opts.dryRun) return result("dry-run", null);
    const refusal = opts.force ? null : await guardFull(deps, read.rows);
    if (refusal) {
      const run = { kind: "full" as const, snapshotId, started, rows: read.rows };
      const runId = await refuseRun(deps, run, refusal, opts.fence);
      return result("refused", runId, refusal);
    }
    const published = await publishFull(deps, { snapshotId, started, opts, dir, ...read }, timer);
    if (published.refused) {
      const run = { kind: "full" as const, snapshotId, started, rows: read.rows, runId: published.runId };
      const runId = await refuseRun(deps, run, published.refused, opts.fence);
      return result("refused", runId, published.refused);
    }
    await pruneCapture(deps, read.snapshot, read.generation);
    return result("enqueued", published.runId, published.detail ?? undefined);
  } finally {
    // a run that did not publish (refused, failed) rolls the loading transaction back
    await (load as SentLoad | null)?.abandon();
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Publishes a full in one state transaction. Keys the full would take from a positive quantity to
 * 0 are counted against the sent state there (the row count misses a table loaded with zeros);
 * too many roll it all back, and the run is refused.
 */
async function publishFull(
  deps: ExportDeps,
  run: FullRead & { snapshotId: string; started: Date; opts: RunOptions; dir: string },
  timer: ReturnType<typeof phaseTimer>,
): Promise<{ runId: number; refused: string | null; detail: string | null }> {
  const runId = await startRun(deps.db, "full", run.opts.trigger, run.snapshotId, run.started);
  const now = deps.clock.now();
  const subscriptions = stockSubscriptions(deps.subscriptions, "stock.full");
  let detail: string | null = null;
  const refused = await recordFailure(deps, runId, async () => {
    // each own-body subscription's messages, rendered to files before the transaction
    const fields = { kind: "full" as const, snapshot_id: run.snapshotId, taken_at: run.readAt.toISOString() };
    const rendered = await renderRun(
      deps,
      subscriptions,
      fields,
      () => rowsFromFiles(run.sent),
      fileStore(run.dir),
    );
    detail = skippedText(rendered);
    timer.mark("render");
    const inTx = <T>(fn: (tx: Tx) => Promise<T>) => (run.load ? run.load.commit(fn) : deps.db.tx(fn));
    return inTx(async (tx) => {
      await run.opts.fence?.(tx);
      await supersedeStock(tx, subscriptions, now);
      await fastToast(tx);
      const bodies = run.parts.map((p) => () => readFile(p.path));
      await enqueueParts(tx, deps, { kind: "full", snapshotId: run.snapshotId, runId, now }, bodies);
      const info = { kind: "full" as const, snapshotId: run.snapshotId, runId, now, takenAt: run.readAt };
      await enqueueRendered(tx, rendered, info);
      timer.mark("enqueue");
      const zeroed = run.load ? await diffLoaded(tx, timer) : await loadSent(tx, run.sent, timer);
      const refusal = run.opts.force ? null : await guardZeroed(deps, tx, zeroed);
      if (refusal) throw new Refused(refusal);
      await applySent(tx, runId);
      await writeWatermark(tx, run.snapshot, run.readAt, runId);
      await writeSourceIdentity(tx, run.identity);
      await finishRun(tx, runId, {
        status: "enqueued",
        now: deps.clock.now(),
        rows: run.rows,
        parts: run.parts.length,
        sourceSnapshot: run.snapshot,
        ...(detail ? { detail } : {}),
      });
      timer.mark("sentApply");
      return null;
    })
      .then((ok) => {
        timer.mark("commit");
        return ok;
      })
      .catch((err: unknown) => {
        if (err instanceof Refused) return err.detail;
        throw err;
      });
  });
  return { runId, refused, detail };
}

/** The full's rows, COPYed into stock_full_rows while they were read, compared with the sent state. */
async function diffLoaded(tx: Tx, timer: ReturnType<typeof phaseTimer>): Promise<number> {
  const zeroed = await diffSent(tx);
  timer.mark("sentDiff");
  return zeroed;
}

/** The full's rows, COPYed part by part into a temporary table and compared with the sent state. */
async function loadSent(tx: Tx, sent: SentFiles, timer: ReturnType<typeof phaseTimer>): Promise<number> {
  await createFullRows(tx, sent.columns);
  for (const file of sent.files) await tx.copyFrom(FULL_ROWS, sent.columns, readPart(file.path, sent.gzip));
  timer.mark("sentCopy");
  const zeroed = await diffSent(tx);
  timer.mark("sentDiff");
  return zeroed;
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
