import { afterEach, describe, expect, inject, it } from "vitest";
import { DEFAULT_SELLABLE_MATCHING, DEFAULT_TIME_CANDIDATES } from "../../src/inventory/queries.js";
import { createTestDb } from "../helpers/db.js";
import {
  applyToOms,
  installDemoCapture,
  STOCK_SUB,
  sourceTruth,
  stockFixture,
  stockMessages,
  withoutZeros,
} from "../helpers/stock.js";

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

describe.skipIf(skip)("comparing every key [postgres]", () => {
  it("over several batches and pages: changed, new and gone keys all sent, nothing else", async () => {
    const t = await createTestDb("postgres");
    dbs.push(t);
    await t.db.query(`create schema wide;
      create table wide.stock (sku text, location text, qty int not null, primary key (sku, location));
      insert into wide.stock select 'S' || lpad(g::text, 6, '0'), 'L' || (g % 3), g % 50 from generate_series(1, 12000) g;`);
    const sellable = "select sku, location, qty as quantity from wide.stock where $1::int >= 0";
    const keys = `${sellable.replace("where", "join unnest($2::text[], $3::text[]) as k(sku, location) using (sku, location) where")}`;
    const yaml = `${STOCK_SUB}stock:\n  capture: { mode: full_diff }\n  queries:\n    sellable: "${sellable}"\n    sellable_keys: "${keys}"\n    time_candidates: none\n`;
    const fx = await stockFixture(t.db, yaml, { seed: false });
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    // Gone keys on the first and last of 3 sent pages, changes in the first and third batch, new keys.
    await t.db.query(`delete from wide.stock where sku in ('S000002', 'S011999');
      update wide.stock set qty = qty + 100 where sku in ('S000010', 'S010010');
      insert into wide.stock values ('S999999', 'L1', 7), ('S000000', 'L0', 0)`);
    const r = await fx.exporter.run("delta", { trigger: "test" });
    expect(r).toMatchObject({ status: "enqueued" });
    const sent = (await stockMessages(t.db)).at(-1)!.rows.map((x) => `${x.sku}:${x.quantity}`);
    // S000002 had 2, S011999 had 49: both gone; S000000 and S999999 are new (a new key is sent
    // even at 0, as the incremental diff does).
    expect(sent.sort()).toEqual([
      "S000000:0",
      "S000002:0",
      "S000010:110",
      "S010010:110",
      "S011999:0",
      "S999999:7",
    ]);
    const oms = applyToOms(await stockMessages(t.db));
    expect(oms).toEqual(withoutZeros(await sourceTruth(t.db, sellable)));
  });
});
