import { join } from "node:path";
import type { Queryable } from "../../src/db/db.js";

/**
 * The inventory the stock figures read: one real table, `sku × location → quantity`, filled
 * with generate_series (20 locations per SKU) and vacuumed, so the product's query and the
 * baseline's COPY read the same heap with the same visibility map.
 */
export const STOCK_TABLE = "bench_stock";

export const LOCATIONS = 20;

/** `$1` is include_future_days: this schema has no future stock, but the query must take it. */
export const SELLABLE = `select sku, location, quantity from ${STOCK_TABLE} where $1::int >= 0`;

/** The same for given keys: $2 skus, $3 locations (pairs), through the primary key. */
export const SELLABLE_KEYS = `select b.sku, b.location, b.quantity from ${STOCK_TABLE} b join unnest($2::text[], $3::text[]) as k(sku, location) using (sku, location) where $1::int >= 0`;

export const skuOf = (n: number) => `SKU-${String(Math.floor(n / LOCATIONS)).padStart(7, "0")}`;
export const locationOf = (n: number) => `LOC-${String(n % LOCATIONS).padStart(3, "0")}`;

export async function createStockTable(db: Queryable, rows: number): Promise<void> {
  await db.query(`drop table if exists ${STOCK_TABLE}`);
  await db.query(
    `create table ${STOCK_TABLE} (sku text not null, location text not null, quantity int not null,
       primary key (sku, location))`,
  );
  await db.query(
    `insert into ${STOCK_TABLE} (sku, location, quantity)
     select 'SKU-' || lpad((g / ${LOCATIONS})::text, 7, '0'), 'LOC-' || lpad((g % ${LOCATIONS})::text, 3, '0'),
            ((g::int8 * 7919) % 100)::int
     from generate_series(0, $1::int - 1) g`,
    [rows],
  );
  await db.query(`vacuum analyze ${STOCK_TABLE}`);
}

/** YAML for a custom source schema: the bench table instead of the reference inventory. */
export const stockQueriesYaml = (indent: string) =>
  [
    "queries:",
    `  sellable: ${JSON.stringify(SELLABLE)}`,
    `  sellable_keys: ${JSON.stringify(SELLABLE_KEYS)}`,
    "  time_candidates: none",
  ]
    .map((l) => indent + l)
    .join("\n");

/**
 * A stock-sync config over the bench table, as the full and formats figures run it: state and
 * source in one database, temp files under `<dir>/data`, `full_diff` capture (the table has no
 * triggers). `format` is the `stock.format` mapping, `subscriptions` the list's entries, `log` the
 * `log` mapping (a trailing YAML comment may say why).
 */
export function benchConfigYaml(
  url: string,
  dir: string,
  opts: { format: string; subscriptions: string; log: string },
): string {
  return `database:
  url: "${url}"
  data_dir: "${join(dir, "data")}"
source:
  url: "${url}"
stock:
  capture: { mode: full_diff }
  format: ${opts.format}
${stockQueriesYaml("  ")}
subscriptions:
${opts.subscriptions}log: ${opts.log}
`;
}
