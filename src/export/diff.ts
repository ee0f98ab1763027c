import type { StockRow } from "./csv.js";

export const keyOf = (sku: string, location: string) => `${sku}\u0000${location}`;

/**
 * What a delta must say: for each candidate key, the current sellable quantity when it differs
 * from what was last sent, and 0 for a key that was sent non-zero and is gone from the source.
 * A key never sent and absent now says nothing; a value changed and changed back says nothing.
 */
export function diffStock(
  candidates: Iterable<string>,
  current: ReadonlyMap<string, StockRow>,
  sent: ReadonlyMap<string, number>,
): StockRow[] {
  const out: StockRow[] = [];
  for (const key of candidates) {
    const now = current.get(key);
    const before = sent.get(key);
    if (now) {
      if (before !== now.quantity) out.push(now);
    } else if (before !== undefined && before !== 0) {
      const [sku, location] = key.split("\u0000") as [string, string];
      out.push({ sku, location, quantity: 0 });
    }
  }
  return sortRows(out);
}

/** By sku, then location: the order a delta's CSV lists its rows. */
export const sortRows = <T extends { sku: string; location: string }>(rows: T[]): T[] =>
  rows.sort((a, b) =>
    a.sku < b.sku ? -1 : a.sku > b.sku ? 1 : a.location < b.location ? -1 : a.location > b.location ? 1 : 0,
  );
