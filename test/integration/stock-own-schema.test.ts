import { beforeEach, expect, it } from "vitest";
import { createExporter } from "../../src/export/exporter.js";
import { installCapture } from "../../src/inventory/capture-catalog.js";
import { describeEachDb } from "../helpers/db.js";
import { testConfig } from "../helpers/engine.js";
import { createShop, shopStockYaml } from "../helpers/shop.js";
import { exportDeps, STOCK_SUB } from "../helpers/stock.js";
import { testDir } from "../helpers/cleanup.js";

// Issue 12.7, 12.8, 17.7 against shop.stock_levels(sku, store, qty numeric(12,3)).
describeEachDb("stock from one's own schema", (t) => {
  const db = () => t().db;
  async function exporterFor(stockYaml: string) {
    const config = testConfig(`${stockYaml}${STOCK_SUB}`);
    await installCapture(db(), config.stock.capture);
    const deps = await exportDeps(db(), config, await testDir("stock-sync-export-"));
    return createExporter(deps);
  }
  /** The CSV text of every stock message so far, by kind, oldest first. */
  const bodies = async (kind: string) =>
    (
      await db().query<{ payload: Uint8Array }>(
        `select m.payload from stock_sync.messages m join stock_sync.stock_runs r on r.id = m.run_id
         where r.kind = $1 order by m.created_at, m.id`,
        [kind],
      )
    ).rows.map((r) => Buffer.from(r.payload).toString("utf8"));
  const lineOf = (csv: string, sku: string) => csv.split("\n").find((l) => l.startsWith(`${sku},`));

  beforeEach(async () => {
    await db().query("truncate stock_sync.stock_sent, stock_sync.stock_watermark");
    await db().query(
      "delete from stock_sync.attempts; delete from stock_sync.deliveries; delete from stock_sync.messages",
    );
    await createShop(db());
  });

  it("12.7: a numeric(12,3) quantity: the full runs, and full and delta print the same text", async () => {
    const exporter = await exporterFor(shopStockYaml({ withDays: true }));
    const full = await exporter.run("full", { trigger: "test" });
    expect(full).toMatchObject({ status: "enqueued", rows: 200 });
    expect(lineOf((await bodies("full"))[0]!, "SKU-002")).toBe("SKU-002,ST-2,3");
    await db().query("update shop.stock_levels set qty = 9.000 where sku = 'SKU-002'");
    expect((await exporter.run("delta", { trigger: "test" })).status).toBe("enqueued");
    expect(lineOf((await bodies("delta")).at(-1)!, "SKU-002")).toBe("SKU-002,ST-2,9");
    expect((await exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    expect(lineOf((await bodies("full")).at(-1)!, "SKU-002")).toBe("SKU-002,ST-2,9");
  });

  it("12.7: a fractional quantity fails the full and the delta naming the query", async () => {
    const exporter = await exporterFor(shopStockYaml({ withDays: true }));
    expect((await exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    await db().query("update shop.stock_levels set qty = 2.5 where sku = 'SKU-003'");
    await expect(exporter.run("delta", { trigger: "test" })).rejects.toThrow(
      /stock\.queries\.sellable(_keys)? returned quantity 2\.5(00)? for SKU-003 at ST-3: quantities are whole numbers/,
    );
    await expect(exporter.run("full", { trigger: "test" })).rejects.toThrow(
      /stock\.queries\.sellable returned quantity 2\.5(00)?.*quantities are whole numbers/,
    );
  });

  it("12.8: a sellable without $1 and queries ending in ';' run as written", async () => {
    const exporter = await exporterFor(shopStockYaml());
    expect((await exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    await db().query("update shop.stock_levels set qty = qty + 5 where sku = 'SKU-004'");
    await db().query("update shop.holds set expires_at = now() - interval '1 second'");
    const delta = await exporter.run("delta", { trigger: "test" });
    expect(delta).toMatchObject({ status: "enqueued", rows: 2 });
    expect(lineOf((await bodies("delta")).at(-1)!, "SKU-004")).toBe("SKU-004,ST-0,10");
  });

  it("17.7: a CSV column the query does not return fails the first run, naming it", async () => {
    const exporter = await exporterFor(
      shopStockYaml({ withDays: true, columns: ["sku", "location", "quantity", "warehouse"] }),
    );
    for (const kind of ["full", "delta"] as const) {
      await expect(exporter.run(kind, { trigger: "test" })).rejects.toThrow(
        /stock\.format\.columns lists "warehouse", but stock\.queries\.sellable has no column "warehouse" \(its columns: sku, location, quantity\)/,
      );
    }
    expect(await bodies("full")).toEqual([]);
  });
});
