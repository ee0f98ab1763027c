import { Writable } from "node:stream";
import { beforeAll, expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { createExporter } from "../../src/export/exporter.js";
import { describeEachDb } from "../helpers/db.js";
import { testDir } from "../helpers/cleanup.js";
import { testConfig } from "../helpers/engine.js";
import { exportDeps, STOCK_SUB, stockFixture, stockMessages } from "../helpers/stock.js";

/**
 * What a delta run reports and records (docs/testing.md, mutation testing of delta.ts): its
 * result, its parts, the runs that change no state (dry run, --out), and a read that fails.
 * Through the exporter, on the demo inventory.
 */

const YAML = `${STOCK_SUB}stock:\n  format: { part_rows: 2 }\n`;

describeEachDb("delta runs: result, parts, dry run, --out, failure", (t) => {
  let fx: Awaited<ReturnType<typeof stockFixture>>;
  const db = () => t().db;

  beforeAll(async () => {
    fx = await stockFixture(db(), YAML);
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
  });

  /** Adds one to the quantity of the first `n` keys with stock; returns them. */
  async function change(n: number) {
    const { rows } = await db().query<{ sku: string; location: string }>(
      `update inventory.stock_on_hand set quantity = quantity + 1
       where (sku, location) in (select sku, location from inventory.stock_on_hand s
                                 join inventory.items i using (sku) join inventory.locations l on l.code = s.location
                                 where i.active and l.active and s.quantity > 50
                                 order by sku, location limit $1)
       returning sku, location`,
      [n],
    );
    return rows;
  }

  it("reports its rows and parts (of stock.format.part_rows); with no change, an empty run with no parts", async () => {
    await fx.exporter.run("delta", { trigger: "test" }); // whatever came before
    const before = (await stockMessages(db())).length;
    await change(3);
    const run = await fx.exporter.run("delta", { trigger: "test" });
    expect(run).toMatchObject({ kind: "delta", status: "enqueued", rows: 3, parts: 2 });
    expect(run).not.toHaveProperty("detail");
    if (run.status === "skipped") throw new Error("skipped");
    expect(run.runId).toEqual(expect.any(Number));
    expect(run.snapshotId).toMatch(/^delta-/);
    expect(run.durationMs).toBeGreaterThanOrEqual(0);
    expect(run.durationMs).toBeLessThan(3_600_000); // a duration, not a sum of two times
    const sent = (await stockMessages(db())).slice(before);
    expect(sent.map((m) => [m.kind, m.rows.length])).toEqual([
      ["delta", 2],
      ["delta", 1],
    ]);
    const { rows } = await db().query<{ status: string; rows: string; parts: number }>(
      "select status, rows::text, parts from stock_sync.stock_runs where id = $1",
      [run.runId],
    );
    expect(rows).toEqual([{ status: "enqueued", rows: "3", parts: 2 }]);

    const empty = await fx.exporter.run("delta", { trigger: "test" });
    expect(empty).toMatchObject({ kind: "delta", status: "empty", rows: 0, parts: 0 });
    expect(empty).not.toHaveProperty("detail");
    expect((await stockMessages(db())).length).toBe(before + 2);
  });

  it("as many changed keys as part_rows make one part, not a second empty one", async () => {
    await fx.exporter.run("delta", { trigger: "test" });
    await change(2);
    expect(await fx.exporter.run("delta", { trigger: "test" })).toMatchObject({ rows: 2, parts: 1 });
  });

  it("subscriptions taking fulls and deltas that never had a full get a full instead, named; not in a dry run", async () => {
    await fx.exporter.run("delta", { trigger: "test" });
    const yaml = `${YAML.replace(
      "stock:",
      '  - name: new-a\n    subjects: [stock.full, stock.delta]\n    url: "file:///dev/null/a"\n' +
        '  - name: new-b\n    subjects: [stock.full, stock.delta]\n    url: "file:///dev/null/b"\n' +
        '  - name: deltas-only\n    subjects: [stock.delta]\n    url: "file:///dev/null/d"\nstock:',
    )}`;
    const config = testConfig(yaml);
    const exporter = createExporter(await exportDeps(db(), config, await testDir("stock-sync-export-")));
    await change(1);
    expect(await exporter.run("delta", { trigger: "test", dryRun: true })).toMatchObject({
      kind: "delta",
      status: "dry-run",
    });
    const run = await exporter.run("delta", { trigger: "test" });
    expect(run).toMatchObject({
      kind: "full",
      status: "enqueued",
      // the deltas-only subscription needs no baseline: not named
      detail: "a full instead of a delta: no full was ever sent to new-a, new-b",
    });
  });

  it("a dry run and --out report the change and change no state: the next delta still sends it", async () => {
    await fx.exporter.run("delta", { trigger: "test" });
    const [k] = await change(1);
    const runsBefore = await runCount(db());
    const dry = await fx.exporter.run("delta", { trigger: "test", dryRun: true });
    expect(dry).toMatchObject({ kind: "delta", status: "dry-run", runId: null, rows: 1, parts: 1 });
    const chunks: Buffer[] = [];
    const out = new Writable({
      write(chunk, _enc, cb) {
        chunks.push(Buffer.from(chunk));
        cb();
      },
    });
    const written = await fx.exporter.run("delta", { trigger: "test", out });
    expect(written).toMatchObject({ status: "written", runId: null, rows: 1 });
    const lines = Buffer.concat(chunks).toString().trim().split("\n");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toBe("sku,location,quantity");
    expect(lines[1]).toMatch(new RegExp(`^${k!.sku},${k!.location},\\d+$`));
    expect(await runCount(db())).toBe(runsBefore);
    expect(await fx.exporter.run("delta", { trigger: "test" })).toMatchObject({
      status: "enqueued",
      rows: 1,
    });
  });

  it("a delta that cannot read the source is a failed run with the reason; a dry run records nothing", async () => {
    const source = new Proxy(db(), {
      get(target, prop) {
        if (prop === "tx")
          return async () => {
            throw new Error("source connection reset");
          };
        const v = Reflect.get(target, prop);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const exporter = createExporter({ ...fx.deps, source });
    const runsBefore = await runCount(db());
    await expect(exporter.run("delta", { trigger: "test", dryRun: true })).rejects.toThrow(
      "source connection reset",
    );
    expect(await runCount(db())).toBe(runsBefore);
    await expect(exporter.run("delta", { trigger: "cli" })).rejects.toThrow("source connection reset");
    const { rows } = await db().query<{ kind: string; trigger: string; status: string; detail: string }>(
      "select kind, trigger, status, detail from stock_sync.stock_runs order by id desc limit 1",
    );
    expect(rows).toEqual([
      { kind: "delta", trigger: "cli", status: "failed", detail: "source connection reset" },
    ]);
  });
});

const runCount = async (db: Db) =>
  (await db.query<{ n: number }>("select count(*)::int as n from stock_sync.stock_runs")).rows[0]!.n;
