import { beforeEach, expect, it } from "vitest";
import type { Clock } from "../../src/clock.js";
import type { Db } from "../../src/db/db.js";
import { createExporter } from "../../src/export/exporter.js";
import { readWatermark, writeWatermark } from "../../src/export/state.js";
import { describeEachDb } from "../helpers/db.js";
import { stockFixture } from "../helpers/stock.js";

/** `db` whose `tx` first awaits `before` (once): a stall at a chosen point of a run. */
function stallingTx(db: Db, before: () => Promise<void>): Db {
  let done = false;
  return new Proxy(db, {
    get(target, prop) {
      if (prop === "tx")
        return async (...args: Parameters<Db["tx"]>) => {
          if (!done) {
            done = true;
            await before();
          }
          return target.tx(...args);
        };
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

const changeStock = (db: Db) =>
  db.query(
    `update inventory.stock_on_hand set quantity = quantity + 3
     where (sku, location) = (select sku, location from inventory.stock_on_hand order by 1, 2 limit 1)`,
  );
const steal = (db: Db) =>
  db.query("update stock_sync.stock_lock set owner = 'thief', until = now() + interval '1 hour'");
const lockOwner = async (db: Db) =>
  (await db.query<{ owner: string | null }>("select owner from stock_sync.stock_lock")).rows[0]!.owner;
const runsOf = async (db: Db, kind: string) =>
  (
    await db.query<{ status: string; detail: string | null }>(
      "select status, detail from stock_sync.stock_runs where kind = $1 order by id",
      [kind],
    )
  ).rows;
const stockMessageCount = async (db: Db) =>
  (
    await db.query<{ n: number }>(
      "select count(*)::int as n from stock_sync.messages where run_id is not null",
    )
  ).rows[0]!.n;

describeEachDb("stock lock fencing (issue 12.9)", (t) => {
  beforeEach(async () => {
    await t().db.query("update stock_sync.stock_lock set owner = null, until = null");
  });

  it("a run whose lock was taken over before its state commit fails and changes nothing", async () => {
    const fx = await stockFixture(t().db);
    expect((await fx.exporter.run("full", { trigger: "cli" })).status).toBe("enqueued");
    const before = { watermark: await readWatermark(t().db), messages: await stockMessageCount(t().db) };
    await changeStock(t().db);

    // The delta stalls before its state transaction; meanwhile another process takes the lock.
    const exporter = createExporter({
      ...fx.deps,
      db: stallingTx(t().db, () => steal(t().db).then(() => undefined)),
    });
    await expect(exporter.run("delta", { trigger: "schedule" })).rejects.toThrow(/stock lock/);
    expect(await readWatermark(t().db)).toEqual(before.watermark);
    expect(await stockMessageCount(t().db)).toBe(before.messages);
    expect((await runsOf(t().db, "delta")).at(-1)).toMatchObject({
      status: "failed",
      detail: expect.stringMatching(/stock lock/),
    });
    expect(await lockOwner(t().db)).toBe("thief"); // the loser does not release another's lock

    // The same for a full.
    const full = createExporter({
      ...fx.deps,
      db: stallingTx(t().db, async () => void (await steal(t().db))),
    });
    await t().db.query("update stock_sync.stock_lock set owner = null, until = null");
    await expect(full.run("full", { trigger: "schedule" })).rejects.toThrow(/stock lock/);
    expect(await readWatermark(t().db)).toEqual(before.watermark);
    expect(await stockMessageCount(t().db)).toBe(before.messages);
    await t().db.query("update stock_sync.stock_lock set owner = null, until = null");
  });

  it("a lock lost and freed again while the run stalled is noticed: its commit fails", async () => {
    const fx = await stockFixture(t().db, undefined, { seed: false });
    await changeStock(t().db);
    const before = await readWatermark(t().db);
    // While the delta reads the source, its lease lapses: another process runs and releases it.
    const source = stallingTx(t().db, async () => {
      await steal(t().db);
      await new Promise((r) => setTimeout(r, 300)); // a few renewal periods (lockMs / 4)
      await t().db.query("update stock_sync.stock_lock set owner = null, until = null");
    });
    const exporter = createExporter({ ...fx.deps, source }, { lockMs: 200 });
    await expect(exporter.run("delta", { trigger: "schedule" })).rejects.toThrow(/stock lock/);
    expect(await readWatermark(t().db)).toEqual(before);
    expect(await lockOwner(t().db)).toBeNull();
  });

  it("the lock's expiry is judged on the database's clock, not a process's skewed one", async () => {
    const fx = await stockFixture(t().db, undefined, { seed: false });
    // Another process holds a live lock (2 minutes left on the database's clock).
    await t().db.query(
      "update stock_sync.stock_lock set owner = 'other', until = now() + interval '2 minutes'",
    );
    const ahead: Clock = { now: () => new Date(Date.now() + 10 * 60_000) };
    const skewed = createExporter({ ...fx.deps, clock: ahead });
    const result = await skewed.run("delta", { trigger: "schedule" });
    expect(result).toMatchObject({ status: "skipped" });
    expect(await lockOwner(t().db)).toBe("other");
    await t().db.query("update stock_sync.stock_lock set owner = null, until = null");
  });

  it("the watermark only moves forward: an older snapshot is refused", async () => {
    const fx = await stockFixture(t().db, undefined, { seed: false });
    const { rows } = await t().db.query<{ s: string }>("select pg_current_snapshot()::text as s");
    await changeStock(t().db); // takes an xid: later snapshots are newer
    expect((await fx.exporter.run("delta", { trigger: "cli" })).status).toBe("enqueued");
    const newer = await readWatermark(t().db);
    await expect(t().db.tx((tx) => writeWatermark(tx, rows[0]!.s, new Date(), 999_999))).rejects.toThrow(
      /backwards/,
    );
    expect(await readWatermark(t().db)).toEqual(newer);
  });
});
