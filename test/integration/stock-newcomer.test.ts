import { expect, it } from "vitest";
import { createExporter } from "../../src/export/exporter.js";
import { describeEachDb } from "../helpers/db.js";
import { testConfig } from "../helpers/engine.js";
import { exportDeps, STOCK_SUB, stockFixture, stockMessages } from "../helpers/stock.js";
import { testDir } from "../helpers/cleanup.js";

// Issue 12.12: a newly added stock subscription received deltas with no baseline.
describeEachDb("a new stock subscription starts with a full", (t) => {
  const db = () => t().db;

  it("the first stock message of a subscription added later is a full, never a delta", async () => {
    const fx = await stockFixture(db());
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    await db().query("update inventory.stock_on_hand set quantity = quantity + 1 where quantity > 10");
    expect((await fx.exporter.run("delta", { trigger: "test" })).status).toBe("enqueued");

    // The config gains a second stock subscription; the process restarts with it.
    const yaml = `${STOCK_SUB}  - name: oms-new\n    subjects: [stock.full, stock.delta]\n    url: "file:///dev/null/unused"\n`;
    const config = testConfig(yaml);
    const deps = await exportDeps(db(), config, await testDir("stock-sync-export-"));
    const exporter = createExporter(deps);
    await db().query("update inventory.stock_on_hand set quantity = quantity + 1 where quantity > 20");
    const run = await exporter.run("delta", { trigger: "test" });
    expect(run.status).toBe("enqueued");

    const first = await stockMessages(db(), "oms-new");
    expect(first.length).toBeGreaterThan(0);
    expect(first[0]!.kind).toBe("full");
    // Once it has its baseline, deltas flow to both as before.
    await db().query("update inventory.stock_on_hand set quantity = quantity + 1 where quantity > 30");
    expect((await exporter.run("delta", { trigger: "test" })).kind).toBe("delta");
    expect((await stockMessages(db(), "oms-new")).at(-1)!.kind).toBe("delta");
    expect((await stockMessages(db(), "oms")).at(-1)!.kind).toBe("delta");
  });
});
