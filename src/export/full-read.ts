import { once } from "node:events";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { format } from "@fast-csv/format";
import type { Tx } from "../db/db.js";
import { captureInstalled } from "../inventory/capture.js";
import { readCaptureState, sourceIdentity } from "../inventory/capture-consumers.js";
import { bindUsed } from "../inventory/params.js";
import { SELLABLE, sourceQueries } from "../inventory/queries.js";
import { CopyRows, copyable, copyStatement, type CsvRows, csvHeader } from "./copy-csv.js";
import { type PartFile, PartWriter, type StockRow } from "./csv.js";
import {
  checkColumns,
  copyFractionError,
  quantityKind,
  wholeQuantity,
  wholeQuantitySql,
} from "./quantity.js";
import { type ExportDeps, inSourceSnapshot, type RunOptions, readSourceSnapshot } from "./run.js";
import type { SentLoad } from "./sent-load.js";

const PROGRESS_EVERY = 10_000;
const STREAM_BATCH = 250;
const KEY_COLUMNS = ["sku", "location", "quantity"] as const;

/** CSV files holding the sku, location and quantity of every row: the parts themselves, or key files. */
export type SentFiles = { files: PartFile[]; columns: readonly string[]; gzip: boolean };

export type FullRead = {
  rows: number;
  parts: PartFile[];
  sent: SentFiles;
  snapshot: string;
  readAt: Date;
  /** Which database was read, and the capture install generation it saw (delta-read.ts). */
  identity: string;
  generation: number | null;
  /** The rows, already COPYed into the state database's transaction while read (sent-load.ts). */
  load: SentLoad | null;
};

/** Opens a SentLoad; called only when the read takes the COPY path into parts. */
export type OpenLoad = (columns: readonly string[]) => Promise<SentLoad>;

/**
 * Every key's sellable quantity, read in one repeatable-read snapshot of the source into part
 * files (or `opts.out`), never all in memory. On PostgreSQL the server writes the CSV (COPY TO
 * STDOUT, ~5x faster than a cursor and fast-csv) when that gives the same bytes; else a cursor.
 */
export async function readFull(
  deps: ExportDeps,
  opts: RunOptions,
  dir: string,
  openLoad?: OpenLoad,
): Promise<FullRead> {
  return inSourceSnapshot(deps.source, async (tx) => {
    // A fractional quantity stops the COPY with a cast error: said in the query's words.
    try {
      return await readIn(deps, tx, opts, dir, openLoad);
    } catch (err) {
      throw copyFractionError(err, SELLABLE) ?? err;
    }
  });
}

async function readIn(
  deps: ExportDeps,
  tx: Tx,
  opts: RunOptions,
  dir: string,
  openLoad?: OpenLoad,
): Promise<FullRead> {
  const { columns, gzip, part_rows: partRows } = deps.stock.format;
  const { snapshot, now } = await readSourceSnapshot(tx);
  const seen = { identity: await sourceIdentity(tx), generation: await captureGeneration(deps, tx) };
  const copy = await copyFor(deps, tx, !opts.out);
  const progress = counter(opts.onProgress);
  if (opts.out) {
    const rows = copy
      ? await copyOut(tx, copy, columns, opts.out, progress)
      : await cursorOut(deps, tx, opts.out, progress);
    return {
      rows,
      parts: [],
      sent: { files: [], columns, gzip },
      snapshot,
      readAt: now,
      ...seen,
      load: null,
    };
  }
  const writer = new PartWriter(dir, { columns, gzip, partRows, csvRows: copy !== null });
  // The sent state is loaded from the parts when they carry the key and quantity; else from
  // key files written beside them.
  const keys = carriesKeys(columns)
    ? null
    : new PartWriter(dir, { columns: KEY_COLUMNS, gzip: false, partRows, name: "keys" });
  if (copy) {
    const load = openLoad ? await openLoad(columns) : null;
    try {
      await copyRows(tx, copy, (rows) => teed(writer, load, rows), progress);
      const parts = await writer.finish();
      const loaded = await load?.finish();
      const rows = progress.done();
      if (load && loaded !== rows) throw new Error(`the sent state's COPY took ${loaded} of ${rows} rows`);
      return { rows, parts, sent: { files: parts, columns, gzip }, snapshot, readAt: now, ...seen, load };
    } catch (err) {
      await load?.abandon();
      throw err;
    }
  }
  for await (const row of cursor(deps, tx)) {
    await writer.write(row);
    await keys?.write(row);
    progress.add(1);
  }
  const parts = await writer.finish();
  const sent = keys
    ? { files: await keys.finish(), columns: KEY_COLUMNS, gzip: false }
    : { files: parts, columns, gzip };
  return { rows: progress.done(), parts, sent, snapshot, readAt: now, ...seen, load: null };
}

/** Rows to their part and, when loading while reading, to the state database, side by side. */
async function teed(writer: PartWriter, load: SentLoad | null, rows: CsvRows): Promise<void> {
  if (!load) return writer.writeCsv(rows);
  await Promise.all([writer.writeCsv(rows), load.write(rows.data)]);
}

/** The capture install's generation in this snapshot (trigger mode, when installed). */
async function captureGeneration(deps: ExportDeps, tx: Tx): Promise<number | null> {
  const { capture } = deps.stock;
  if (capture.mode !== "triggers" || !(await captureInstalled(tx))) return null;
  const { rows } = await tx.query<{ t: string | null }>(
    "select to_regclass('stock_sync_capture.install')::text as t",
  );
  return rows[0]?.t ? (await readCaptureState(tx, capture.consumer)).generation : null;
}

const carriesKeys = (columns: readonly string[]) => KEY_COLUMNS.every((c) => columns.includes(c));

/**
 * Checks the sellable query's result columns (every run: the first run of a new config fails
 * with the query's name, exit 2), then gives the COPY statement when this source and these
 * columns allow it (parts need the key columns too).
 */
async function copyFor(deps: ExportDeps, tx: Tx, parts: boolean): Promise<string | null> {
  const { columns } = deps.stock.format;
  const { sellable } = sourceQueries(deps.stock.queries);
  const days = deps.stock.sellable.include_future_days;
  const bound = bindUsed(sellable, [days]);
  const result = await tx.describe(bound.text, bound.values);
  checkColumns(SELLABLE, result, columns);
  if (!tx.copyTo || (parts && !carriesKeys(columns)) || !copyable(result, columns)) return null;
  const quantity = result.find((c) => c.name === "quantity")!;
  const whole = quantityKind(quantity.typeId) === "decimal" ? wholeQuantitySql : undefined;
  return copyStatement(sellable, columns, days, whole);
}

async function* cursor(deps: ExportDeps, tx: Tx): AsyncIterable<StockRow> {
  const { sellable } = sourceQueries(deps.stock.queries);
  const bound = bindUsed(sellable, [deps.stock.sellable.include_future_days]);
  // Small batches: rows die young, so the heap stays small however large the snapshot.
  for await (const row of tx.stream<StockRow>(bound.text, bound.values, STREAM_BATCH)) {
    row.quantity = wholeQuantity(row.quantity, SELLABLE, row);
    yield row;
  }
}

/** COPY's output cut into whole rows, handed on as they come (the next chunk waits for `take`). */
async function copyRows(tx: Tx, sql: string, take: (rows: CsvRows) => Promise<void>, progress: Progress) {
  const rows = new CopyRows();
  let failed: { err: unknown } | null = null;
  for await (const chunk of tx.copyTo!(sql)) {
    // A client cannot stop a COPY TO midway: left unread, the connection would hold the
    // rollback behind it for ever. So after a failure here the rest is read and dropped.
    if (failed) continue;
    try {
      const whole = rows.push(chunk);
      if (!whole.ends.length) continue;
      await take(whole);
      progress.add(whole.ends.length);
    } catch (err) {
      failed = { err };
    }
  }
  if (failed) throw failed.err;
  rows.end();
}

/** `--out FILE|-`: one plain CSV, no parts, no state. */
async function copyOut(
  tx: Tx,
  sql: string,
  columns: readonly string[],
  out: NodeJS.WritableStream,
  progress: Progress,
) {
  await write(out, csvHeader(columns));
  await copyRows(tx, sql, (rows) => write(out, rows.data), progress);
  return progress.done();
}

async function cursorOut(deps: ExportDeps, tx: Tx, out: NodeJS.WritableStream, progress: Progress) {
  const formatter = format<StockRow, StockRow>({
    headers: [...deps.stock.format.columns],
    alwaysWriteHeaders: true,
    includeEndRowDelimiter: true,
  });
  async function* counted() {
    for await (const row of cursor(deps, tx)) {
      yield row;
      progress.add(1);
    }
  }
  // A pipeline, so a failing output (a full disk, a closed pipe) ends the run with its error and
  // closes the cursor, where a piped formatter would wait for a drain that never comes. The
  // output stays open (`-` is stdout).
  await pipeline(Readable.from(counted()), formatter, out, { end: false });
  return progress.done();
}

async function write(out: NodeJS.WritableStream, data: string | Buffer): Promise<void> {
  if (!out.write(data)) await once(out, "drain");
}

type Progress = { add(rows: number): void; done(): number };

/** Counts rows and reports every PROGRESS_EVERY of them, and the total at the end. */
function counter(onProgress?: (rows: number) => void): Progress {
  let count = 0;
  return {
    add(rows) {
      const before = Math.floor(count / PROGRESS_EVERY);
      count += rows;
      if (Math.floor(count / PROGRESS_EVERY) > before) onProgress?.(count);
    },
    done() {
      onProgress?.(count);
      return count;
    },
  };
}
