import { afterEach, describe, expect, inject, it } from "vitest";
import { DEFAULT_SELLABLE_MATCHING, DEFAULT_TIME_CANDIDATES } from "../../src/inventory/queries.js";
import { createTestDb } from "../helpers/db.js";
import { installDemoCapture, STOCK_SUB, stockFixture, stockMessages } from "../helpers/stock.js";

/**
 * Issue 12.11: an item or location change recomputes that item's or location's keys only, never
 * the whole sellable query; the reference schema has indexes for what deltas look up.
 */
const skip = !inject("pgTemplate");
const dbs: { drop(): Promise<void> }[] = [];
afterEach(async () => {
  for (const d of dbs.splice(0)) await d.drop();
});

// shop.whole() raises once armed: a delta that runs the whole sellable query fails.
const SHOP = `
create schema shop;
create table shop.items (sku text primary key, active boolean not null default true);
create table shop.stock (sku text not null, store text not null, qty int not null, primary key (sku, store));
create table shop.trap (armed boolean not null);
insert into shop.trap values (false);
create function shop.whole(days int) returns boolean language plpgsql as $$
begin
  if (select armed from shop.trap) then raise exception 'the whole sellable query ran'; end if;
  return days >= 0;
end $$;
insert into shop.items select 'SKU-' || i from generate_series(1, 50) i;
insert into shop.stock select 'SKU-' || i, 'ST-' || j, i + j from generate_series(1, 50) i, generate_series(1, 4) j;`;

const SELECT =
  "select s.sku, s.store as location, s.qty as quantity from shop.stock s join shop.items i using (sku)";
const YAML = `${STOCK_SUB}stock:
  queries:
    sellable: "${SELECT} where i.active and shop.whole($1::int)"
    sellable_keys: "${SELECT} join unnest($2::text[], $3::text[]) as k(sku, store) using (sku, store) where i.active and $1::int >= 0"
    sellable_matching: "${SELECT} where i.active and $1::int >= 0 and (s.sku = any($2::text[]) or s.store = any($3::text[]))"
    time_candidates: none
  capture:
    tables:
      - { table: shop.items, sku: sku }
      - { table: shop.stock, sku: sku, location: store }
`;

describe.skipIf(skip)("item and location changes [postgres]", () => {
  it("a deactivated, then reactivated item recomputes its keys only (sellable_matching)", async () => {
    const t = await createTestDb("postgres");
    dbs.push(t);
    await t.db.query(SHOP);
    const fx = await stockFixture(t.db, YAML, { seed: false });
    await installDemoCapture(t.db, fx.config);
    expect(await fx.exporter.run("full", { trigger: "test" })).toMatchObject({
      status: "enqueued",
      rows: 200,
    });
    await t.db.query("update shop.trap set armed = true");
    await t.db.query("update shop.items set active = false where sku = 'SKU-7'");
    expect(await fx.exporter.run("delta", { trigger: "test" })).toMatchObject({
      status: "enqueued",
      rows: 4,
    });
    const rows = (await stockMessages(t.db)).at(-1)!.rows;
    expect(rows.every((r) => r.sku === "SKU-7" && r.quantity === 0)).toBe(true);
    await t.db.query("update shop.items set active = true where sku = 'SKU-7'");
    expect(await fx.exporter.run("delta", { trigger: "test" })).toMatchObject({
      status: "enqueued",
      rows: 4,
    });
    expect((await stockMessages(t.db)).at(-1)!.rows.map((r) => r.quantity)).toEqual([8, 9, 10, 11]);
  });

  it("the reference schema indexes what deltas look up", async () => {
    const t = await createTestDb("postgres");
    dbs.push(t);
    await stockFixture(t.db);
    const plan = async (sql: string, values: unknown[]) => {
      await t.db.query("set enable_seqscan = off");
      const { rows } = await t.db.query<{ "QUERY PLAN": string }>(`explain ${sql}`, values);
      return rows.map((r) => r["QUERY PLAN"]).join("\n");
    };
    const now = new Date();
    const timed = await plan(DEFAULT_TIME_CANDIDATES, [new Date(now.getTime() - 120_000), now, 3]);
    expect(timed).toMatch(/reservations_open_expiry_idx/);
    expect(timed).toMatch(/incoming_stock_expected_on_idx/);
    const matching = await plan(DEFAULT_SELLABLE_MATCHING, [0, [], ["ST-LYS01"]]);
    expect(matching).toMatch(/incoming_stock_location_idx/);
    const sent = await plan("select * from stock_sync.stock_sent where location = any($1::text[])", [["X"]]);
    expect(sent).toMatch(/stock_sent_by_location/);
  });
});
