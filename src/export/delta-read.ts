import type { Queryable, Tx } from "../db/db.js";
import { ConnectorError } from "../errors.js";
import { captureInstalled } from "../inventory/capture.js";
import { captureProblems } from "../inventory/capture-catalog.js";
import {
  type ChangedKeys,
  changedSince,
  readCaptureState,
  registerConsumer,
  sourceIdentity,
  xidsWentBack,
} from "../inventory/capture-consumers.js";
import { bound } from "../inventory/params.js";
import {
  SELLABLE,
  SELLABLE_KEYS,
  SELLABLE_MATCHING,
  type SourceQueries,
  sourceQueries,
} from "../inventory/queries.js";
import type { StockRow } from "./csv.js";
import { compareAll } from "./delta-compare.js";
import { diffStock, keyOf } from "./diff.js";
import { checkColumns, wholeQuantity } from "./quantity.js";
import { type ExportDeps, inSourceSnapshot, readSourceSnapshot } from "./run.js";
import { readSourceIdentity, sentForKeys, sentMatching, type Watermark } from "./state.js";

/** What a delta found: the rows to send, and where its snapshot and capture stood. */
export type DeltaRead = {
  snapshot: string;
  readAt: Date;
  identity: string;
  /** The capture install's generation seen in the snapshot (trigger mode). */
  generation: number | null;
  rows: StockRow[];
  /** How many of the rows take a key from a positive quantity to 0 (the shrink guard's measure). */
  zeroed: number;
  /** Why every key was compared, for the run's detail. */
  detail?: string;
};

/** Capture cannot be trusted (a trigger dropped or disabled, a table recreated): run a full. */
export class CaptureBrokenError extends ConnectorError {
  readonly needsFull = true;
}

type Candidates = { current: Map<string, StockRow>; candidates: Set<string>; wildcards: ChangedKeys };

/**
 * Reads one snapshot of the source. Trigger mode checks first that capture is installed and
 * whole; then every key is compared with the sent state (bounded, delta-compare.ts) when the
 * change rows cannot be trusted to be complete, else only the keys they name and the keys time
 * changed are.
 */
export async function readDelta(
  deps: ExportDeps,
  watermark: Watermark | null,
  opts: { stateful: boolean; onProgress?: ((rows: number) => void) | undefined },
): Promise<DeltaRead> {
  const { capture } = deps.stock;
  const triggers = capture.mode === "triggers";
  if (triggers) {
    if (!(await captureInstalled(deps.source)))
      throw new ConnectorError(
        "NOT_AVAILABLE",
        "change capture is not installed on the source: run `stock-sync source install --apply`, or set stock.capture.mode: full_diff",
      );
    // --dry-run and --out change no state, on the source either.
    if (opts.stateful)
      await registerConsumer(deps.source, capture.consumer).catch((err) =>
        deps.log.warn({ err }, "could not register this consumer of the capture table (read-only source?)"),
      );
  }
  const storedIdentity = watermark ? await readSourceIdentity(deps.db) : null;
  const q = sourceQueries(deps.stock.queries);
  const days = deps.stock.sellable.include_future_days;
  let found: Candidates | null = null;
  const read = await inSourceSnapshot(deps.source, async (tx) => {
    const { snapshot, now } = await readSourceSnapshot(tx);
    await checkQueries(tx, q, deps.stock, days);
    const identity = await sourceIdentity(tx);
    let generation: number | null = null;
    let reason: string | null = watermark ? null : "no full or delta has been recorded yet";
    if (triggers) {
      const problems = await captureProblems(tx, capture.tables, { enableAlways: capture.enable_always });
      if (problems.length)
        throw new CaptureBrokenError(
          "NOT_AVAILABLE",
          `change capture cannot be trusted: ${problems.join("; ")}. Run \`stock-sync source install --apply\` (the next delta then compares every key); a full snapshot runs meanwhile`,
        );
      const state = await readCaptureState(tx, capture.consumer);
      generation = state.generation;
      if (!reason && state.consumerGeneration !== state.generation)
        reason = `change capture was installed or re-installed since consumer "${capture.consumer}" last read it`;
    }
    if (!reason && watermark && storedIdentity !== identity)
      reason = `the source is not the database the watermark was read on (${storedIdentity ?? "unknown"} → ${identity})`;
    if (!reason && triggers && watermark && (await xidsWentBack(tx, watermark.source_snapshot)))
      reason = "the source's transaction ids went back (restored from a backup?)";
    let changed: ChangedKeys | null = null;
    if (!reason && triggers && watermark) {
      changed = await changedSince(tx, watermark.source_snapshot);
      if (changed.truncated.length) reason = `TRUNCATE of ${[...new Set(changed.truncated)].join(", ")}`;
    }
    const base = { snapshot, readAt: now, identity, generation };
    if (!changed || reason) {
      const state = deps.source === deps.db && deps.db.kind === "pglite" ? tx : deps.db;
      const { rows, zeroed } = await compareAll(tx, state, q, days, opts.onProgress);
      return { ...base, rows, zeroed, ...(reason ? { detail: `compared every key: ${reason}` } : {}) };
    }
    found = await candidates(tx, q, days, changed, watermark!.read_at, now, matchingName(deps));
    return { ...base, rows: [] as StockRow[], zeroed: 0 };
  });
  if (!found) return read;
  const c: Candidates = found;
  const sent = await sentFor(deps.db, c);
  const rows = diffStock(c.candidates, c.current, sent);
  return { ...read, rows, zeroed: zeroedKeys(rows, sent) };
}

/** Keys these rows take from a positive quantity to 0 (gone from the source, or at 0 now). */
const zeroedKeys = (rows: readonly StockRow[], sent: ReadonlyMap<string, number>) =>
  rows.filter((r) => r.quantity === 0 && (sent.get(keyOf(r.sku, r.location)) ?? 0) > 0).length;

/** The name errors give the rows of `sellableMatching`: the configured query, or the sellable it filters. */
const matchingName = (deps: ExportDeps) =>
  deps.stock.queries.sellable_matching.trim() ? SELLABLE_MATCHING : SELLABLE;

/**
 * Every query a delta's rows come from gives the CSV's columns and a whole-number quantity
 * (checked each run, so a new config fails at once, with the query's name: exit 2).
 */
async function checkQueries(tx: Tx, q: SourceQueries, stock: ExportDeps["stock"], days: number) {
  const { columns } = stock.format;
  checkColumns(SELLABLE, await tx.describe(...bound(q.sellable, [days])), columns);
  checkColumns(SELLABLE_KEYS, await tx.describe(...bound(q.sellableKeys, [days, [], []])), columns);
  if (stock.queries.sellable_matching.trim())
    checkColumns(SELLABLE_MATCHING, await tx.describe(...bound(q.sellableMatching, [days, [], []])), columns);
}

/** The candidate keys (changed rows, time) recomputed in the snapshot. */
async function candidates(
  tx: Tx,
  q: SourceQueries,
  days: number,
  changed: ChangedKeys,
  since: Date,
  now: Date,
  matching: string,
): Promise<Candidates> {
  const current = new Map<string, StockRow>();
  const keys = new Set<string>();
  const take = (rows: StockRow[], query: string) => {
    for (const row of rows) {
      const key = keyOf(row.sku, row.location);
      current.set(key, { ...row, quantity: wholeQuantity(row.quantity, query, row) });
      keys.add(key);
    }
  };
  const exact = new Map(changed.exact.map((k) => [keyOf(k.sku, k.location), k]));
  if (q.timeCandidates) {
    const timed = await tx.query<{ sku: string; location: string }>(
      ...bound(q.timeCandidates, [since, now, days]),
    );
    for (const k of timed.rows) exact.set(keyOf(k.sku, k.location), k);
  }
  for (const key of exact.keys()) keys.add(key);
  if (exact.size) {
    const pairs = [...exact.values()];
    const { rows } = await tx.query<StockRow>(
      ...bound(q.sellableKeys, [days, pairs.map((k) => k.sku), pairs.map((k) => k.location)]),
    );
    take(rows, SELLABLE_KEYS);
  }
  // An item or a location changed as a whole (deactivated, reactivated): its keys only.
  if (changed.skus.length || changed.locations.length) {
    const values = [days, changed.skus, changed.locations];
    take((await tx.query<StockRow>(...bound(q.sellableMatching, values))).rows, matching);
  }
  return { current, candidates: keys, wildcards: changed };
}

/** The sent side of every candidate, and the sent keys a whole-item or whole-location change touches. */
async function sentFor(db: Queryable, c: Candidates): Promise<Map<string, number>> {
  const keys = [...c.candidates].map((k) => k.split("\u0000") as [string, string]);
  const sent = await sentForKeys(
    db,
    keys.map((k) => k[0]),
    keys.map((k) => k[1]),
  );
  const { skus, locations } = c.wildcards;
  if (skus.length || locations.length) {
    for (const [key, quantity] of await sentMatching(db, skus, locations)) {
      sent.set(key, quantity);
      c.candidates.add(key);
    }
  }
  return sent;
}
