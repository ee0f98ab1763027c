import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { stockStatus } from "../../src/export/status.js";
import { runCli } from "../helpers/cli.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, waitUntil } from "../helpers/engine.js";
import { startServer } from "../helpers/http.js";
import { stockFixture } from "../helpers/stock.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "stock-sync-progress-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// oms takes its parts (a drop folder); oms-b is paused, so its parts stay pending.
const subscriptions = () =>
  `subscriptions:\n  - name: oms\n    subjects: [stock.full, stock.delta]\n    url: "file://${dir}/out"\n` +
  `  - name: oms-b\n    subjects: [stock.full, stock.delta]\n    url: "file://${dir}/out-b"\n    status: paused\n`;
const YAML = () => `${subscriptions()}stock:\n  format: { part_rows: 500 }\n`;

describeEachDb("stock delivery progress in status (issue 12.13)", (t) => {
  it("shows parts delivered of parts per subscription for the last full, not 'enqueued' for ever", async () => {
    const fx = await stockFixture(t().db, YAML());
    const full = await fx.exporter.run("full", { trigger: "cli" });
    expect(full).toMatchObject({ status: "enqueued", parts: 3 });
    const engine = await startEngine(t().db, fx.config);
    try {
      await waitUntil(async () => {
        const { rows } = await t().db.query<{ n: number }>(
          "select count(*)::int as n from stock_sync.deliveries where subscription = 'oms' and status = 'delivered'",
        );
        return rows[0]!.n === 3;
      });
    } finally {
      await engine.stop();
    }

    const stock = await stockStatus(t().db);
    const zero = { failed: 0, dead: 0, superseded: 0, rejected: 0, rejected_first: [] };
    expect(stock.last_full?.delivery).toEqual([
      { subscription: "oms", parts: 3, delivered: 3, pending: 0, ...zero },
      { subscription: "oms-b", parts: 3, delivered: 0, pending: 3, ...zero },
    ]);

    const server = await startServer(t().db, fx.config);
    try {
      const api = (await (await fetch(`${server.url}/api/status`)).json()) as {
        stock: { last_full: { delivery: unknown } };
      };
      expect(api.stock.last_full.delivery).toEqual(stock.last_full?.delivery);
      const html = await (await fetch(`${server.url}/status`)).text();
      expect(html).toContain("delivered: oms 3/3, oms-b 0/3");
    } finally {
      await server.close();
    }

    // Once oms-b has its parts too, the full reads "delivered".
    await t().db.query("update stock_sync.deliveries set status = 'delivered' where subscription = 'oms-b'");
    const after = await stockStatus(t().db);
    expect(after.last_full?.delivery.every((d) => d.delivered === 3)).toBe(true);

    if (!t().url) return; // the CLI reaches PGlite only through a running connector's server
    const path = join(dir, "status.yaml");
    await writeFile(path, `database: { url: "${t().url}" }\nsource: { url: "${t().url}" }\n${YAML()}`);
    const r = await runCli(["--config", path, "status"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/last full\s+delivered\s.*oms 3\/3, oms-b 3\/3/);
  });
});
