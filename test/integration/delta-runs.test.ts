import { writeFile } from "node:fs/promises";
import { join } from "node:path";
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
    const { rows } = await db().query<{ status: string; rows: string; parts: number; detail: string | null }>(
      "select status, rows::text, parts, detail from stock_sync.stock_runs where id = $1",
      [run.runId],
    );
    // no detail recorded either (not the "; " of two missing ones joined)
    expect(rows).toEqual([{ status: "enqueued", rows: "3", parts: 2, detail: null }]);

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

  it("a rendered body: the delta is rendered for it, its skipped rows and a compare-all reason are in the run's detail; --out --subscription prints its body", async () => {
    await fx.exporter.run("delta", { trigger: "test" });
    const dir = await testDir("stock-sync-delta-map-");
    const { rows: locs } = await db().query<{ location: string }>(
      "select distinct location from inventory.stock_on_hand order by location",
    );
    // keys a change shows in a delta: active item and location, stock to spare
    const { rows: keys } = await db().query<{ sku: string; location: string }>(
      `select sku, location from inventory.stock_on_hand s join inventory.items i using (sku)
       join inventory.locations l on l.code = s.location
       where i.active and l.active and s.quantity > 50 order by location desc, sku`,
    );
    const unmapped = keys[0]!.location;
    const mappedKey = keys.find((k) => k.location !== unmapped)!;
    const changed = [...keys.filter((k) => k.location === unmapped).slice(0, 2), mappedKey];
    expect(changed).toHaveLength(3);
    const file = join(dir, "locations.csv");
    const mapped = locs.filter((l) => l.location !== unmapped).map((l) => `${l.location},OMS-${l.location}`);
    await writeFile(file, `ours,theirs\n${mapped.join("\n")}\n`);
    const yaml = YAML.replace(
      "stock:",
      '  - name: rendered\n    subjects: [stock.full, stock.delta]\n    url: "file:///dev/null/r"\n' +
        `    body: { format: json, template: '{"k": kind, "id": snapshot_id, "at": taken_at, "e": [rows.{"s": sku, "l": location, "q": quantity}]}' }\n` +
        `    map: { location: { file: "${file}", missing: skip } }\nstock:`,
    );
    const exporter = createExporter(
      await exportDeps(db(), testConfig(yaml), await testDir("stock-sync-export-")),
    );
    // its first delta is a full (no full was ever sent to it), whose own detail follows the reason
    const first = await exporter.run("delta", { trigger: "test" });
    expect(first).toMatchObject({ kind: "full", status: "enqueued" });
    expect(first.detail).toMatch(
      /^a full instead of a delta: no full was ever sent to rendered; rendered: [1-9]\d* rows skipped \(no mapping\)$/,
    );

    // two changed keys at the unmapped location, one at a mapped one; the watermark gone, so the
    // delta compares every key and says why
    for (const k of changed)
      await db().query(
        "update inventory.stock_on_hand set quantity = quantity + 1 where sku = $1 and location = $2",
        [k.sku, k.location],
      );
    await db().query("delete from stock_sync.stock_watermark");

    // --out --subscription: that subscription's body, mapped rows only; nothing recorded
    const chunks: Buffer[] = [];
    const out = new Writable({
      write(chunk, _enc, cb) {
        chunks.push(Buffer.from(chunk));
        cb();
      },
    });
    const runsBefore = await runCount(db());
    const written = await exporter.run("delta", { trigger: "test", out, subscription: "rendered" });
    expect(written).toMatchObject({ kind: "delta", status: "written", runId: null, rows: 3 });
    if (written.status === "skipped") throw new Error("skipped");
    const printed = JSON.parse(Buffer.concat(chunks).toString());
    expect(printed).toMatchObject({ k: "delta", id: written.snapshotId });
    expect(printed.e).toEqual([{ s: mappedKey.sku, l: `OMS-${mappedKey.location}`, q: expect.any(Number) }]);
    expect(await runCount(db())).toBe(runsBefore);

    const progress: number[] = [];
    const run = await exporter.run("delta", { trigger: "test", onProgress: (n) => progress.push(n) });
    const why =
      "compared every key: no full or delta has been recorded yet; rendered: 2 rows skipped (no mapping)";
    expect(run).toMatchObject({ kind: "delta", status: "enqueued", rows: 3, detail: why });
    // the compare of every key reports its progress over the whole source, not only the 3 rows
    expect(Math.max(...progress)).toBeGreaterThan(3);
    if (run.status === "skipped") throw new Error("skipped");
    const { rows: recorded } = await db().query<{ detail: string }>(
      "select detail from stock_sync.stock_runs where id = $1",
      [run.runId],
    );
    expect(recorded).toEqual([{ detail: why }]);
    const { rows: msgs } = await db().query<{ headers: Record<string, string>; payload: Uint8Array }>(
      `select m.headers, m.payload from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
       where d.subscription = 'rendered' order by d.sequence desc limit 1`,
    );
    const body = JSON.parse(Buffer.from(msgs[0]!.payload).toString("utf8"));
    expect(msgs[0]!.headers["stock-sync-kind"]).toBe("delta");
    expect(body).toMatchObject({ k: "delta", id: run.snapshotId, at: expect.stringMatching(/^\d{4}-/) });
    expect(body.e).toEqual([{ s: mappedKey.sku, l: `OMS-${mappedKey.location}`, q: expect.any(Number) }]);
  });
});

const runCount = async (db: Db) =>
  (await db.query<{ n: number }>("select count(*)::int as n from stock_sync.stock_runs")).rows[0]!.n;
