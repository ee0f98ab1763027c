import type { Queryable, Tx } from "../db/db.js";
import { bound } from "../inventory/params.js";
import { SELLABLE, type SourceQueries } from "../inventory/queries.js";
import type { StockRow } from "./csv.js";
import { keyOf, sortRows } from "./diff.js";
import { wholeQuantity } from "./quantity.js";
import { countNonZeroSent, nonZeroSentPages, sentForKeys } from "./state.js";

const BATCH = 5000;
const STREAM_BATCH = 1000;

/**
 * Every key of the source compared with what was sent (no watermark, full_diff mode, or a
 * reason to distrust the capture rows), in bounded memory: the source's rows are streamed and
 * looked up in the sent state a batch at a time, and only differing rows are kept. The keys that
 * left the source are found without a set of every key: when fewer non-zero sent keys were
 * matched than exist, the non-zero sent keys are read in pages and asked of the source
 * (sellable_keys, in the same snapshot).
 * `state` is the state database, or the source transaction itself when both are one PGlite
 * (one connection: a second one would wait for this transaction).
 * Also counts the keys it takes from a positive quantity to 0 (the shrink guard's measure).
 */
export async function compareAll(
  tx: Tx,
  state: Queryable,
  q: SourceQueries,
  days: number,
  onProgress?: (rows: number) => void,
): Promise<{ rows: StockRow[]; zeroed: number }> {
  const out: StockRow[] = [];
  let batch: StockRow[] = [];
  let matchedNonZero = 0;
  let zeroed = 0;
  let read = 0;
  const flush = async () => {
    const sent = await sentForKeys(
      state,
      batch.map((r) => r.sku),
      batch.map((r) => r.location),
    );
    for (const row of batch) {
      const before = sent.get(keyOf(row.sku, row.location));
      if (before !== undefined && before !== 0) matchedNonZero++;
      if (before !== row.quantity) out.push(row);
      if (row.quantity === 0 && before !== undefined && before > 0) zeroed++;
    }
    read += batch.length;
    onProgress?.(read);
    batch = [];
  };
  for await (const row of tx.stream<StockRow>(...bound(q.sellable, [days]), STREAM_BATCH)) {
    batch.push({ ...row, quantity: wholeQuantity(row.quantity, SELLABLE, row) });
    if (batch.length >= BATCH) await flush();
  }
  if (batch.length) await flush();
  if ((await countNonZeroSent(state)) > matchedNonZero) {
    const gone = await goneKeys(tx, state, q, days);
    out.push(...gone.rows);
    zeroed += gone.zeroed;
  }
  return { rows: sortRows(out), zeroed };
}

/** Sent non-zero keys the source no longer has: each is sent as 0 (`zeroed`: those sent positive). */
async function goneKeys(
  tx: Tx,
  state: Queryable,
  q: SourceQueries,
  days: number,
): Promise<{ rows: StockRow[]; zeroed: number }> {
  const gone: StockRow[] = [];
  let zeroed = 0;
  for await (const page of nonZeroSentPages(state)) {
    const { rows } = await tx.query<StockRow>(
      ...bound(q.sellableKeys, [days, page.map((k) => k.sku), page.map((k) => k.location)]),
    );
    const present = new Set(rows.map((r) => keyOf(r.sku, r.location)));
    for (const k of page)
      if (!present.has(keyOf(k.sku, k.location))) {
        gone.push({ sku: k.sku, location: k.location, quantity: 0 });
        if (k.positive) zeroed++;
      }
  }
  return { rows: gone, zeroed };
}
