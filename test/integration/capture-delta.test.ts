import { afterEach, describe, expect, inject, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { createExporter } from "../../src/export/exporter.js";
import { DEFAULT_SELLABLE } from "../../src/inventory/queries.js";
import { startScheduler } from "../../src/scheduler/scheduler.js";
import { systemClock } from "../../src/clock.js";
import { type Backend, createTestDb } from "../helpers/db.js";
import { quietLog, waitUntil } from "../helpers/engine.js";
import {
  expectOmsEqualsSource,
  installDemoCapture,
  STOCK_SUB,
  sourceTruth,
  stockFixture,
  stockMessages,
} from "../helpers/stock.js";

/**
 * What every delta checks about change capture (issue 12.4, 12.5, 12.10, 17.6): a TRUNCATE, a
 * dropped or disabled trigger, a recreated table, an install after writes, a second consumer and
 * a re-pointed source each either compare every key or fail loudly; never a silent empty delta.
 */
const pgSkip = !inject("pgTemplate");
const dbs: { drop(): Promise<void> }[] = [];
afterEach(async () => {
  for (const d of dbs.splice(0).reverse()) await d.drop();
});

async function fresh(backend: Backend) {
  const t = await createTestDb(backend);
  dbs.push(t);
  return t;
}

const lastRun = async (db: Db, kind = "delta") =>
  (
    await db.query<{ status: string; detail: string | null; trigger: string }>(
      "select status, detail, trigger from stock_sync.stock_runs where kind = $1 order by id desc limit 1",
      [kind],
    )
  ).rows[0]!;

const aKey = async (db: Db) =>
  (
    await db.query<{ sku: string; location: string }>(
      `select s.sku, s.location from inventory.stock_on_hand s join inventory.items i using (sku)
       join inventory.locations l on l.code = s.location where i.active and l.active and s.quantity > 20
       order by s.sku, s.location limit 1`,
    )
  ).rows[0]!;

const bump = (db: Db, k: { sku: string; location: string }, by = 5) =>
  db.query("update inventory.stock_on_hand set quantity = quantity + $3 where sku = $1 and location = $2", [
    k.sku,
    k.location,
    by,
  ]);

for (const backend of ["postgres", "pglite"] as const) {
  // PGlite is slow to seed: the checks that differ by back end, with time to spare.
  const pgOnly = backend === "pglite" ? it.skip : it;
  describe.skipIf(backend === "postgres" && pgSkip)(
    `capture checked at every delta [${backend}]`,
    { timeout: 120_000 },
    () => {
      async function withFull() {
        const t = await fresh(backend);
        const fx = await stockFixture(t.db);
        expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
        return { db: t.db, fx, delta: () => fx.exporter.run("delta", { trigger: "test" }) };
      }

      it("a TRUNCATE of an input table: the next delta compares every key and says so", async () => {
        const { db, delta } = await withFull();
        const before = await sourceTruth(db, DEFAULT_SELLABLE);
        await db.query("truncate inventory.reservations");
        expect(await sourceTruth(db, DEFAULT_SELLABLE)).not.toEqual(before);
        const r = await delta();
        expect(r.status).toBe("enqueued");
        await expectOmsEqualsSource(db);
        expect((await lastRun(db)).detail).toContain("TRUNCATE of inventory.reservations");
        expect((await delta()).status).toBe("empty");
      });

      it("a disabled capture trigger: the delta fails loudly and is recorded failed", async () => {
        const { db, delta } = await withFull();
        await db.query("alter table inventory.stock_on_hand disable trigger user");
        await bump(db, await aKey(db));
        await expect(delta()).rejects.toThrow(/capture cannot be trusted.*stock_on_hand is disabled/);
        const run = await lastRun(db);
        expect(run.status).toBe("failed");
        expect(run.detail).toMatch(/disabled/);
      });

      pgOnly(
        "a table recreated by an ETL job: the delta fails; after re-install every key is compared",
        async () => {
          const { db, fx, delta } = await withFull();
          await db.query(`create table inventory.safety_stock_new (like inventory.safety_stock including all);
        insert into inventory.safety_stock_new select sku, location, quantity + 3 from inventory.safety_stock;
        drop table inventory.safety_stock;
        alter table inventory.safety_stock_new rename to safety_stock`);
          await expect(delta()).rejects.toThrow(/safety_stock is missing/);
          await installDemoCapture(db, fx.config);
          const r = await delta();
          expect(r.status).toBe("enqueued");
          expect((await lastRun(db)).detail).toMatch(
            /compared every key: change capture was installed or re-installed/,
          );
          await expectOmsEqualsSource(db);
        },
      );

      it("capture not installed in trigger mode: the first delta is an error, not everything", async () => {
        const t = await fresh(backend);
        // A subscription taking deltas only: one taking fulls too would get a full first (12.12).
        const deltasOnly = STOCK_SUB.replace("[stock.full, stock.delta]", "[stock.delta]");
        const fx = await stockFixture(t.db, deltasOnly, { capture: false });
        await expect(fx.exporter.run("delta", { trigger: "test" })).rejects.toThrow(/not installed/);
        expect(await stockMessages(t.db)).toEqual([]);
      });

      it("a write before the install is in the first delta after it", async () => {
        const t = await fresh(backend);
        const fx = await stockFixture(t.db, STOCK_SUB, { capture: false });
        expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
        const k = await aKey(t.db);
        await bump(t.db, k, 11);
        await installDemoCapture(t.db, fx.config);
        const r = await fx.exporter.run("delta", { trigger: "test" });
        expect(r.status).toBe("enqueued");
        const last = (await stockMessages(t.db)).at(-1)!;
        expect(last.rows.map((x) => `${x.sku}|${x.location}`)).toContain(`${k.sku}|${k.location}`);
        await expectOmsEqualsSource(t.db);
        // Then deltas are incremental again.
        expect((await fx.exporter.run("delta", { trigger: "test" })).status).toBe("empty");
      });

      pgOnly("full_diff: a deactivated item and a changed key, compared in bounded batches", async () => {
        const t = await fresh(backend);
        const fx = await stockFixture(t.db, `${STOCK_SUB}stock:\n  capture: { mode: full_diff }\n`);
        expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
        const k = await aKey(t.db);
        await bump(t.db, k);
        await t.db.query(
          "update inventory.items set active = false where sku = (select sku from inventory.items where sku <> $1 order by sku limit 1)",
          [k.sku],
        );
        expect((await fx.exporter.run("delta", { trigger: "test" })).status).toBe("enqueued");
        await expectOmsEqualsSource(t.db);
        expect((await fx.exporter.run("delta", { trigger: "test" })).status).toBe("empty");
      });
    },
  );
}

describe.skipIf(pgSkip)("capture consumers and source identity [postgres]", () => {
  it("two deployments on one source: each gets every change, whatever the other prunes", async () => {
    const a = await fresh("postgres");
    const b = await fresh("postgres");
    const blue = await stockFixture(a.db, `${STOCK_SUB}stock:\n  capture: { consumer: blue }\n`);
    const green = await stockFixture(b.db, `${STOCK_SUB}stock:\n  capture: { consumer: green }\n`, {
      seed: false,
    });
    const greenDeps = { ...green.deps, source: a.db };
    const greenExporter = createExporter(greenDeps);
    expect((await blue.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    expect((await greenExporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    const k = await aKey(a.db);
    await bump(a.db, k, 9);
    expect(await blue.exporter.run("delta", { trigger: "test" })).toMatchObject({
      status: "enqueued",
      rows: 1,
    });
    expect(await blue.exporter.run("delta", { trigger: "test" })).toMatchObject({ status: "empty" });
    const r = await greenExporter.run("delta", { trigger: "test" });
    expect(r).toMatchObject({ status: "enqueued", rows: 1 });
    const last = (await stockMessages(b.db)).at(-1)!;
    expect(last.rows.map((x) => `${x.sku}|${x.location}`)).toEqual([`${k.sku}|${k.location}`]);
  });

  it("full_diff with capture installed: the changes nobody reads are pruned", async () => {
    const t = await fresh("postgres");
    await stockFixture(t.db); // installs capture
    const fx = await stockFixture(t.db, `${STOCK_SUB}stock:\n  capture: { mode: full_diff }\n`, {
      seed: false,
    });
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    // A row older than any transaction (rows go once nothing running on the server is older than
    // them, and other databases' long transactions hold that back: an old xid makes it certain).
    await t.db.query(
      "insert into stock_sync_capture.changes (xid, sku, location) values ('3'::xid8, 'OLD', 'X')",
    );
    expect((await fx.exporter.run("delta", { trigger: "test" })).status).toBe("empty");
    const { rows } = await t.db.query("select 1 from stock_sync_capture.changes where sku = 'OLD'");
    expect(rows).toEqual([]);
  });

  it("re-pointed at a restored database: every key is compared", async () => {
    const state = await fresh("postgres");
    const restored = await fresh("postgres");
    // The "restore": the same inventory, capture installed, a write made before the original's full.
    await stockFixture(restored.db);
    const k = await aKey(restored.db);
    await bump(restored.db, k, 13);
    const fx = await stockFixture(state.db);
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    // A restored database carries its consumer row from the time of the backup.
    const hasConsumers = await restored.db.query<{ t: string | null }>(
      "select to_regclass('stock_sync_capture.consumers')::text as t",
    );
    if (hasConsumers.rows[0]!.t)
      await restored.db.query(
        `insert into stock_sync_capture.consumers (name, position, generation)
         select 'stock-sync', pg_snapshot_xmin(pg_current_snapshot()), generation from stock_sync_capture.install`,
      );
    const repointed = createExporter({ ...fx.deps, source: restored.db });
    const r = await repointed.run("delta", { trigger: "test" });
    expect(r.status).toBe("enqueued");
    const last = (await stockMessages(state.db)).at(-1)!;
    expect(last.rows.find((x) => x.sku === k.sku && x.location === k.location)?.quantity).toBe(
      (await sourceTruth(restored.db, DEFAULT_SELLABLE)).get(`${k.sku}|${k.location}`),
    );
    expect((await lastRun(state.db)).detail).toMatch(/not the database the watermark was read on/);
  });

  it("a broken trigger: the scheduler's delta fails and a full runs instead", async () => {
    const t = await fresh("postgres");
    const yaml = `${STOCK_SUB}stock:\n  full: { schedule: "0 0 1 1 *" }\n  delta: { schedule: "* * * * * *" }\n`;
    const fx = await stockFixture(t.db, yaml);
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    await t.db.query("alter table inventory.reservations disable trigger user");
    const scheduler = await startScheduler(
      { db: t.db, clock: systemClock, log: quietLog, exporter: fx.exporter },
      fx.config.stock,
    );
    try {
      await waitUntil(async () => (await lastRun(t.db, "full")).trigger === "schedule", 20_000);
    } finally {
      await scheduler.stop();
      await fx.exporter.idle();
    }
    expect((await lastRun(t.db, "delta")).status).toBe("failed");
  });
});
