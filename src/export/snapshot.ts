import { once } from "node:events";
import { createReadStream } from "node:fs";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { createGunzip } from "node:zlib";
import { format } from "@fast-csv/format";
import type { Tx } from "../db/db.js";
import { captureInstalled, pruneChanges } from "../inventory/capture.js";
import { sourceQueries } from "../inventory/queries.js";
import { notifyOnce } from "../outbox/outcome.js";
import { type PartFile, PartWriter, type StockRow } from "./csv.js";
import {
  type ExportDeps,
  enqueueParts,
  inSourceSnapshot,
  newSnapshotId,
  type RunOptions,
  type RunResult,
  readSourceSnapshot,
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
  writeWatermark,
} from "./state.js";

const PROGRESS_EVERY = 10_000;
const STREAM_BATCH = 250;

/**
 * A full snapshot: every key's sellable quantity, read in one repeatable-read snapshot of the
 * source and streamed to part files (never all in memory); then, in one state transaction, the
 * parts are enqueued, older undelivered stock messages superseded, the sent state replaced (a
 * COPY of the parts and three set-based statements) and
 * the delta watermark set to this snapshot, so nothing falls between this full and the next delta.
 */
export async function runFull(deps: ExportDeps, opts: RunOptions): Promise<RunResult> {
  const started = deps.clock.now();
  const snapshotId = newSnapshotId("full", started);
  const dir = join(deps.tmpDir, snapshotId);
  await mkdir(dir, { recursive: true });
  try {
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
    await pruneCapture(deps, read.snapshot);
    return result("enqueued", runId);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** CSV files holding the sku, location and quantity of every row: the parts themselves, or key files. */
type SentFiles = { files: PartFile[]; columns: readonly string[]; gzip: boolean };

type FullRead = { rows: number; parts: PartFile[]; sent: SentFiles; snapshot: string; readAt: Date };

const KEY_COLUMNS = ["sku", "location", "quantity"] as const;

async function readFull(deps: ExportDeps, opts: RunOptions, dir: string): Promise<FullRead> {
  const { sellable } = sourceQueries(deps.stock.queries);
  const { columns, gzip, part_rows: partRows } = deps.stock.format;
  return inSourceSnapshot(deps.source, async (tx) => {
    const { snapshot, now } = await readSourceSnapshot(tx);
    // Small batches: rows die young, so the heap stays small however large the snapshot.
    const rows = tx.stream<StockRow>(sellable, [deps.stock.sellable.include_future_days], STREAM_BATCH);
    if (opts.out) {
      const count = await writeCsv(rows, columns, opts.out, opts.onProgress);
      return { rows: count, parts: [], sent: { files: [], columns, gzip }, snapshot, readAt: now };
    }
    const writer = new PartWriter(dir, { columns, gzip, partRows });
    // The sent state is loaded from the parts when they carry the key and quantity; else from
    // key files written beside them.
    const keys = carriesKeys(columns)
      ? null
      : new PartWriter(dir, { columns: KEY_COLUMNS, gzip: false, partRows, name: "keys" });
    let count = 0;
    for await (const row of rows) {
      await writer.write(row);
      await keys?.write(row);
      if (++count % PROGRESS_EVERY === 0) opts.onProgress?.(count);
    }
    const parts = await writer.finish();
    const sent = keys
      ? { files: await keys.finish(), columns: KEY_COLUMNS, gzip: false }
      : { files: parts, columns, gzip };
    opts.onProgress?.(count);
    return { rows: count, parts, sent, snapshot, readAt: now };
  });
}

const carriesKeys = (columns: readonly string[]) => KEY_COLUMNS.every((c) => columns.includes(c));

/** `--out FILE|-`: one CSV (gzipped when configured), no parts, no state. */
async function writeCsv(
  rows: AsyncIterable<StockRow>,
  columns: readonly string[],
  out: NodeJS.WritableStream,
  onProgress?: (rows: number) => void,
): Promise<number> {
  const formatter = format<StockRow, StockRow>({
    headers: [...columns],
    alwaysWriteHeaders: true,
    includeEndRowDelimiter: true,
  });
  formatter.pipe(out, { end: false });
  let count = 0;
  for await (const row of rows) {
    if (!formatter.write(row)) await once(formatter, "drain");
    if (++count % PROGRESS_EVERY === 0) onProgress?.(count);
  }
  formatter.end();
  await once(formatter, "end");
  onProgress?.(count);
  return count;
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
      await supersedeStock(tx, stockSubscriptions(deps.subscriptions, "stock.full"), now);
      const bodies = run.parts.map((p) => () => readFile(p.path));
      await enqueueParts(tx, deps, { kind: "full", snapshotId: run.snapshotId, runId, now }, bodies);
      await loadSent(tx, run.sent, runId);
      await writeWatermark(tx, run.snapshot, run.readAt, runId);
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

/** Change rows every later snapshot sees are done with. Best effort: a failure only keeps rows longer. */
export async function pruneCapture(deps: ExportDeps, snapshot: string): Promise<void> {
  if (deps.stock.capture.mode !== "triggers") return;
  try {
    if (await captureInstalled(deps.source)) await pruneChanges(deps.source, snapshot);
  } catch (err) {
    deps.log.warn({ err }, "could not prune the change-capture table");
  }
}
