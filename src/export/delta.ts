import { captureInstalled, changedSince } from "../inventory/capture.js";
import { bindUsed } from "../inventory/params.js";
import { type SourceQueries, sourceQueries } from "../inventory/queries.js";
import { ConnectorError } from "../errors.js";
import type { Tx } from "../db/db.js";
import { encodeCsv, type StockRow } from "./csv.js";
import { diffStock, keyOf } from "./diff.js";
import { guardZeroed, refuseRun } from "./guard.js";
import { checkColumns, wholeQuantity } from "./quantity.js";
import { pruneCapture, runFull } from "./snapshot.js";
import {
  type ExportDeps,
  enqueueParts,
  inSourceSnapshot,
  newSnapshotId,
  recordFailure,
  type RunOptions,
  type RunResult,
  readSourceSnapshot,
  stockSubscriptions,
} from "./run.js";
import {
  allSent,
  finishRun,
  readWatermark,
  sentForKeys,
  sentMatching,
  startRun,
  upsertSent,
  type Watermark,
  withoutFull,
  writeWatermark,
} from "./state.js";

/** What the source says now about the keys that may have changed. */
type DeltaRead = {
  snapshot: string;
  readAt: Date;
  current: Map<string, StockRow>;
  candidates: Set<string>;
  wildcards: { skus: string[]; locations: string[] } | "all";
};

/**
 * A delta: the keys whose sellable quantity differs from what was last sent, with absolute
 * values (0 for keys that are gone). Candidates come from the change-capture rows the previous
 * snapshot could not see, plus keys whose inputs change with time; each is recomputed in one
 * snapshot of the source and compared with the sent state. With no change, nothing is sent.
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
  const watermark = await readWatermark(deps.db);
  const read = await readDelta(deps, watermark);
  const sent = await sentFor(deps, read);
  const rows = diffStock(read.candidates, read.current, sent);
  const parts = splitParts(rows, deps.stock.format.part_rows);
  const result = (status: RunResult["status"], runId: number | null, detail?: string): RunResult => ({
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
  if (opts.out) {
    opts.out.write(await encodeCsv(rows, { columns: deps.stock.format.columns, gzip: false }));
    return result("written", null);
  }
  if (opts.dryRun) return result("dry-run", null);
  const refusal = opts.force ? null : await guardZeroed(deps, deps.db, zeroedKeys(rows, sent));
  if (refusal) {
    const runId = await refuseRun(deps, { kind: "delta", snapshotId, started, rows: rows.length }, refusal);
    return result("refused", runId, refusal);
  }
  const runId = await startRun(deps.db, "delta", opts.trigger, snapshotId, started);
  await recordFailure(deps, runId, () =>
    deps.db.tx(async (tx) => {
      if (rows.length) {
        const csv = { columns: deps.stock.format.columns, gzip: deps.stock.format.gzip };
        const bodies = parts.map((p) => () => encodeCsv(p, csv));
        await enqueueParts(tx, deps, { kind: "delta", snapshotId, runId, now: deps.clock.now() }, bodies);
        await upsertSent(tx, rows, runId);
      }
      await writeWatermark(tx, read.snapshot, read.readAt, runId);
      await finishRun(tx, runId, {
        status: rows.length ? "enqueued" : "empty",
        now: deps.clock.now(),
        rows: rows.length,
        parts: rows.length ? parts.length : 0,
        sourceSnapshot: read.snapshot,
      });
    }),
  );
  await pruneCapture(deps, read.snapshot);
  return result(rows.length ? "enqueued" : "empty", runId);
}

async function readDelta(deps: ExportDeps, watermark: Watermark | null): Promise<DeltaRead> {
  const q = sourceQueries(deps.stock.queries);
  const days = deps.stock.sellable.include_future_days;
  // Without a watermark (no full yet) or without triggers, compare everything: the full-diff fallback.
  const fullDiff = !watermark || deps.stock.capture.mode === "full_diff";
  if (!fullDiff && !(await captureInstalled(deps.source))) {
    throw new ConnectorError(
      "NOT_AVAILABLE",
      "change capture is not installed on the source: run `stock-sync source install --apply`, or set stock.capture.mode: full_diff",
    );
  }
  return inSourceSnapshot(deps.source, async (tx) => {
    const { snapshot, now } = await readSourceSnapshot(tx);
    await checkQueries(tx, q, deps.stock.format.columns, days);
    const current = new Map<string, StockRow>();
    const candidates = new Set<string>();
    const take = (rows: AsyncIterable<StockRow> | StockRow[], query: string) =>
      collect(rows, current, candidates, query);
    if (fullDiff) {
      await take(tx.stream<StockRow>(...bound(q.sellable, [days])), SELLABLE);
      return { snapshot, readAt: now, current, candidates, wildcards: "all" };
    }
    const changed = await changedSince(tx, watermark.source_snapshot);
    const exact = new Map(changed.exact.map((k) => [keyOf(k.sku, k.location), k]));
    if (q.timeCandidates) {
      const timed = await tx.query<{ sku: string; location: string }>(
        ...bound(q.timeCandidates, [watermark.read_at, now, days]),
      );
      for (const k of timed.rows) exact.set(keyOf(k.sku, k.location), k);
    }
    for (const key of exact.keys()) candidates.add(key);
    if (exact.size) {
      const keys = [...exact.values()];
      const { rows } = await tx.query<StockRow>(
        ...bound(q.sellableKeys, [days, keys.map((k) => k.sku), keys.map((k) => k.location)]),
      );
      await take(rows, SELLABLE_KEYS);
    }
    if (changed.skus.length || changed.locations.length)
      await take(await matching(tx, q.sellable, days, changed), SELLABLE);
    return {
      snapshot,
      readAt: now,
      current,
      candidates,
      wildcards: { skus: changed.skus, locations: changed.locations },
    };
  });
}

/** Keys of an item or a location that changed as a whole (deactivated, reactivated). */
async function matching(
  tx: Tx,
  sellable: string,
  days: number,
  changed: { skus: string[]; locations: string[] },
) {
  const { rows } = await tx.query<StockRow>(
    ...bound(
      `select * from (${sellable}\n) s where s.sku = any($2::text[]) or s.location = any($3::text[])`,
      [days, changed.skus, changed.locations],
    ),
  );
  return rows;
}

const SELLABLE = "stock.queries.sellable";
const SELLABLE_KEYS = "stock.queries.sellable_keys";

/** A query and only the values it uses (a query for one's own schema may not need $1). */
const bound = (sql: string, values: unknown[]): [string, unknown[]] => {
  const b = bindUsed(sql, values);
  return [b.text, b.values];
};

/** Both queries a delta's rows come from give the CSV's columns and a whole-number quantity. */
async function checkQueries(tx: Tx, q: SourceQueries, columns: readonly string[], days: number) {
  checkColumns(SELLABLE, await tx.describe(...bound(q.sellable, [days])), columns);
  const keys = await tx.describe(...bound(q.sellableKeys, [days, [], []]));
  checkColumns(SELLABLE_KEYS, keys, columns);
}

async function collect(
  rows: AsyncIterable<StockRow> | StockRow[],
  current: Map<string, StockRow>,
  candidates: Set<string>,
  query: string,
) {
  for await (const row of rows) {
    const key = keyOf(row.sku, row.location);
    current.set(key, { ...row, quantity: wholeQuantity(row.quantity, query, row) });
    candidates.add(key);
  }
}

/** The sent side of every candidate, and the sent keys a whole-item or whole-location change touches. */
async function sentFor(deps: ExportDeps, read: DeltaRead): Promise<Map<string, number>> {
  if (read.wildcards === "all") {
    const sent = await allSent(deps.db);
    for (const key of sent.keys()) read.candidates.add(key);
    return sent;
  }
  const keys = [...read.candidates].map((k) => k.split("\u0000") as [string, string]);
  const sent = await sentForKeys(
    deps.db,
    keys.map((k) => k[0]),
    keys.map((k) => k[1]),
  );
  const { skus, locations } = read.wildcards;
  if (skus.length || locations.length) {
    for (const [key, quantity] of await sentMatching(deps.db, skus, locations)) {
      sent.set(key, quantity);
      read.candidates.add(key);
    }
  }
  return sent;
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

/** Keys this delta takes from a positive quantity to 0 (gone from the source, or at 0 now). */
const zeroedKeys = (rows: readonly StockRow[], sent: ReadonlyMap<string, number>) =>
  rows.filter((r) => r.quantity === 0 && (sent.get(keyOf(r.sku, r.location)) ?? 0) > 0).length;

function splitParts<T>(rows: T[], size: number): T[][] {
  const parts: T[][] = [];
  for (let i = 0; i < rows.length; i += size) parts.push(rows.slice(i, i + size));
  return parts.length ? parts : [[]];
}
