import { beforeAll, beforeEach, expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { DEFAULT_SELLABLE } from "../../src/inventory/queries.js";
import { describeEachDb } from "../helpers/db.js";
import { seededRandom } from "../helpers/random.js";
import {
  expectOmsEqualsSource,
  STOCK_SUB,
  sourceTruth,
  stockFixture,
  stockMessages,
} from "../helpers/stock.js";

describeEachDb("stock delta completeness", (t) => {
  const rand = seededRandom("stock-delta keys");
  let fx: Awaited<ReturnType<typeof stockFixture>>;
  const db = () => t().db;
  const delta = () => fx.exporter.run("delta", { trigger: "test" });
  /** Rows of the newest delta message (or [] when the run sent nothing). */
  const lastDelta = async () => {
    const msgs = await stockMessages(db());
    const last = msgs.at(-1);
    return last?.kind === "delta" ? last.rows : [];
  };
  const oneKey = async () =>
    (
      await db().query<{ sku: string; location: string }>(
        `select s.sku, s.location from inventory.stock_on_hand s join inventory.items i using (sku)
         join inventory.locations l on l.code = s.location
         where i.active and l.active and s.quantity > 50
           -- no incoming stock: deleting the stock row must then leave the key at 0
           and not exists (select 1 from inventory.incoming_stock n where n.sku = s.sku and n.location = s.location)
         order by s.sku, s.location limit 1 offset $1`,
        [Math.floor(rand() * 100)],
      )
    ).rows[0]!;

  beforeAll(async () => {
    fx = await stockFixture(db());
    const full = await fx.exporter.run("full", { trigger: "test" });
    expect(full.status).toBe("enqueued");
  });

  beforeEach(async () => {
    // Each case starts from a quiet state: whatever earlier cases left is sent first.
    await delta();
  });

  it("the full equals the source, key for key", async () => {
    await expectOmsEqualsSource(db());
  });

  it("with no changes, 100 deltas produce no message", async () => {
    const before = (await stockMessages(db())).length;
    for (let i = 0; i < 100; i++) expect((await delta()).status).toBe("empty");
    expect(await stockMessages(db())).toHaveLength(before);
  });

  it("a value changed and changed back between two deltas is not sent", async () => {
    const k = await oneKey();
    await db().query(
      "update inventory.stock_on_hand set quantity = quantity + 7 where sku = $1 and location = $2",
      [k.sku, k.location],
    );
    await db().query(
      "update inventory.stock_on_hand set quantity = quantity - 7 where sku = $1 and location = $2",
      [k.sku, k.location],
    );
    expect((await delta()).status).toBe("empty");
  });

  it("a stock change is sent with its absolute value", async () => {
    const k = await oneKey();
    await db().query(
      "update inventory.stock_on_hand set quantity = quantity + 5 where sku = $1 and location = $2",
      [k.sku, k.location],
    );
    expect(rowsOf(await delta())).toBe(1);
    const truth = await sourceTruth(db(), DEFAULT_SELLABLE);
    expect(await lastDelta()).toEqual([{ ...k, quantity: truth.get(`${k.sku}|${k.location}`) }]);
  });

  it.each([
    [
      "a new open reservation",
      "insert into inventory.reservations (sku, location, quantity) values ($1, $2, 3)",
    ],
    [
      "a safety buffer",
      "insert into inventory.safety_stock (sku, location, quantity) values ($1, $2, 4) on conflict (sku, location) do update set quantity = inventory.safety_stock.quantity + 4",
    ],
    [
      "incoming stock due today",
      "insert into inventory.incoming_stock (sku, location, quantity, expected_on) values ($1, $2, 9, current_date)",
    ],
  ])("%s (no write to the stock row) counts", async (_, sql) => {
    const k = await oneKey();
    await db().query(sql, [k.sku, k.location]);
    expect(rowsOf(await delta())).toBe(1);
    const truth = await sourceTruth(db(), DEFAULT_SELLABLE);
    expect(await lastDelta()).toEqual([{ ...k, quantity: truth.get(`${k.sku}|${k.location}`) }]);
  });

  it("many rows written in one transaction (one timestamp) all appear", async () => {
    const { rows } = await db().query<{ sku: string; location: string }>(
      `update inventory.stock_on_hand set quantity = quantity + 11
       where (sku, location) in (select sku, location from inventory.stock_on_hand where quantity > 60 order by sku limit 40)
       returning sku, location`,
    );
    await delta();
    const sent = new Set((await lastDelta()).map((r) => `${r.sku}|${r.location}`));
    const truth = await sourceTruth(db(), DEFAULT_SELLABLE);
    // the sellable ones among the 40 (an inactive item or a closed location is not sellable)
    const sellable = rows.map((r) => `${r.sku}|${r.location}`).filter((k) => truth.has(k));
    expect(rows).toHaveLength(40);
    expect(sellable.length).toBeGreaterThan(0);
    expect(sellable.filter((k) => !sent.has(k))).toEqual([]);
  });

  it("a deleted row, a deactivated item and a closed location are sent as 0", async () => {
    const k = await oneKey();
    await db().query("delete from inventory.stock_on_hand where sku = $1 and location = $2", [
      k.sku,
      k.location,
    ]);
    const item = (await oneKey()).sku;
    await db().query("update inventory.items set active = false where sku = $1", [item]);
    await delta();
    const rows = await lastDelta();
    expect(rows).toContainEqual({ ...k, quantity: 0 });
    const itemRows = rows.filter((r) => r.sku === item);
    expect(itemRows.length).toBeGreaterThan(0);
    expect(itemRows.every((r) => r.quantity === 0)).toBe(true);
    await db().query("update inventory.locations set active = false where code = 'ST-BOD01'");
    await delta();
    const closed = (await lastDelta()).filter((r) => r.location === "ST-BOD01");
    expect(closed.length).toBeGreaterThan(10);
    expect(closed.every((r) => r.quantity === 0)).toBe(true);
    await db().query("update inventory.locations set active = true where code = 'ST-BOD01'");
    await delta();
    expect((await lastDelta()).filter((r) => r.location === "ST-BOD01").length).toBe(closed.length);
  });

  it("incoming stock whose date enters the window with no write is sent (time passing)", async () => {
    const k = await oneKey();
    await db().query(
      "insert into inventory.incoming_stock (sku, location, quantity, expected_on) values ($1, $2, 13, current_date + 1)",
      [k.sku, k.location],
    );
    expect((await delta()).status).toBe("empty"); // tomorrow's stock does not count yet
    // A day passes: the row is due today now, though nothing wrote to it since the last delta.
    await withoutCapture(
      db(),
      "update inventory.incoming_stock set expected_on = current_date where sku = $1 and location = $2 and quantity = 13",
      [k.sku, k.location],
    );
    await db().query("update stock_sync.stock_watermark set read_at = read_at - interval '1 day'");
    expect(rowsOf(await delta())).toBe(1);
    expect((await lastDelta())[0]).toMatchObject(k);
  });

  it("a reservation that expires with no write is sent", async () => {
    const k = await oneKey();
    await db().query(
      "insert into inventory.reservations (sku, location, quantity, expires_at) values ($1, $2, 5, now() + interval '1 hour')",
      [k.sku, k.location],
    );
    await delta();
    await withoutCapture(
      db(),
      "update inventory.reservations set expires_at = now() - interval '1 minute' where sku = $1 and location = $2 and quantity = 5",
      [k.sku, k.location],
    );
    await db().query("update stock_sync.stock_watermark set read_at = read_at - interval '2 hours'");
    expect(rowsOf(await delta())).toBe(1);
  });

  it("a randomized run of mixed changes ends with full + deltas equal to the source", async () => {
    await randomizedRun(db(), delta, seededRandom("stock-delta mixed changes (triggers)"));
  });
});

describeEachDb("stock delta completeness, capture.mode full_diff", (t) => {
  it("a randomized run of mixed changes ends with full + deltas equal to the source", async () => {
    const db = t().db;
    const fx = await stockFixture(db, `${STOCK_SUB}stock:\n  capture: { mode: full_diff }\n`, {
      capture: false,
    });
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    const delta = () => fx.exporter.run("delta", { trigger: "test" });
    await randomizedRun(db, delta, seededRandom("stock-delta mixed changes (full_diff)"));
  });
});

/**
 * 25 cycles of three random changes (the kinds that move sellable stock) and a delta; then the
 * OMS (full + deltas applied in order) must equal the source. SQL random() is seeded too.
 */
async function randomizedRun(db: Db, delta: () => Promise<unknown>, rand: () => number) {
  const ops = [
    "update inventory.stock_on_hand set quantity = quantity + (floor(random() * 21) - 10)::int where (sku, location) in (select sku, location from inventory.stock_on_hand order by random() limit 5)",
    "delete from inventory.stock_on_hand where (sku, location) in (select sku, location from inventory.stock_on_hand order by random() limit 1)",
    "insert into inventory.reservations (sku, location, quantity) select sku, location, 2 from inventory.stock_on_hand order by random() limit 3",
    "update inventory.reservations set status = 'fulfilled' where id in (select id from inventory.reservations where status = 'open' order by random() limit 2)",
    "update inventory.items set active = not active where sku in (select sku from inventory.items order by random() limit 1)",
    "insert into inventory.incoming_stock (sku, location, quantity, expected_on) select sku, location, 6, current_date from inventory.stock_on_hand order by random() limit 2",
    "insert into inventory.stock_on_hand (sku, location, quantity) select i.sku, l.code, 17 from inventory.items i cross join inventory.locations l where not exists (select 1 from inventory.stock_on_hand s where s.sku = i.sku and s.location = l.code) order by random() limit 2",
  ];
  for (let cycle = 0; cycle < 25; cycle++) {
    for (let j = 0; j < 3; j++) {
      const op = ops[Math.floor(rand() * ops.length)]!;
      await db.tx(async (tx) => {
        await tx.query("select setseed($1)", [rand() * 2 - 1]);
        await tx.query(op);
      });
    }
    await delta();
  }
  await expectOmsEqualsSource(db);
}

const rowsOf = (r: { status: string } & { rows?: number }) => r.rows ?? `not run: ${r.status}`;

/** A write that changes data as time would: change capture does not see it (triggers off). */
function withoutCapture(db: Db, sql: string, values: unknown[]) {
  return db.tx(async (tx) => {
    await tx.query("set local session_replication_role = replica");
    await tx.query(sql, values);
  });
}
