import type { Db } from "../../src/db/db.js";

/**
 * A source schema the project has never seen (issue 12): stock levels per store with a numeric
 * quantity, and holds that expire. Keys are (sku, store); the store is the location.
 */
export async function createShop(db: Db): Promise<void> {
  await db.query(`
    drop schema if exists shop cascade;
    create schema shop;
    create table shop.stock_levels (sku text not null, store text not null, qty numeric(12,3) not null,
                                    primary key (sku, store));
    create table shop.holds (sku text not null, store text not null, qty numeric(12,3) not null,
                             expires_at timestamptz not null);
    insert into shop.stock_levels
      select 'SKU-' || lpad(i::text, 3, '0'), 'ST-' || (i % 4), (i % 17) + 1 from generate_series(1, 200) i;
    insert into shop.holds values ('SKU-001', 'ST-1', 1, now() + interval '1 day');`);
}

const SELLABLE = `select l.sku, l.store as location, greatest(l.qty - coalesce(h.qty, 0), 0) as quantity
from shop.stock_levels l
left join (select sku, store, sum(qty) as qty from shop.holds where expires_at > now() group by sku, store) h
  using (sku, store)`;

/**
 * The three queries as a newcomer writes them: no $1 (no future stock in this schema), a
 * trailing ";", the time candidates without $3. `withDays` uses $1 in each, as the reference does.
 */
export function shopQueries(opts: { withDays?: boolean } = {}) {
  const days = opts.withDays ? " where $1::int >= 0" : "";
  const sellable = opts.withDays ? `select * from (${SELLABLE}) s${days}` : `${SELLABLE};`;
  const keys = `select * from (${SELLABLE}) s where (s.sku, s.location) in (select * from unnest($2::text[], $3::text[]))${opts.withDays ? " and $1::int >= 0" : ""}`;
  const time = `select sku, store as location from shop.holds where expires_at > $1::timestamptz and expires_at <= $2::timestamptz${opts.withDays ? " and $3::int >= 0" : ""}`;
  return { sellable, sellable_keys: `${keys};`, time_candidates: time };
}

/** The stock section of a config over the shop schema (block scalars keep the SQL as written). */
export function shopStockYaml(opts: { withDays?: boolean; columns?: string[] } = {}): string {
  const q = shopQueries(opts);
  const block = (sql: string) =>
    sql
      .split("\n")
      .map((l) => `        ${l}`)
      .join("\n");
  return `stock:
  format:
    columns: [${(opts.columns ?? ["sku", "location", "quantity"]).join(", ")}]
  queries:
    sellable: |
${block(q.sellable)}
    sellable_keys: |
${block(q.sellable_keys)}
    time_candidates: |
${block(q.time_candidates)}
  capture:
    tables:
      - { table: shop.stock_levels, sku: sku, location: store }
      - { table: shop.holds, sku: sku, location: store }
`;
}
