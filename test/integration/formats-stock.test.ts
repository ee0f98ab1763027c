import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import type { RunResult } from "../../src/export/run.js";
import { describeEachDb } from "../helpers/db.js";
import { stockFixture, stockMessages } from "../helpers/stock.js";
import { testDir } from "../helpers/cleanup.js";

// Issue 14: each subscription with a body gets its own messages, cut by rows and bytes, with its
// own sequence; the plain CSV subscription beside it is unchanged.
const sub = (name: string, extra: string) =>
  `  - name: ${name}\n    subjects: [stock.full, stock.delta]\n    url: "file:///dev/null/unused"\n${extra}`;
const yaml = (extra: string) => `subscriptions:\n${sub("oms", "")}${extra}`;
// the suite's tests share one database: each uses its own subscription names
const ndjson = (name: string) =>
  sub(
    name,
    "    body: { format: ndjson, columns: [sku, {store: location}, {qty: quantity}, record_id], rows_per_message: 500 }\n",
  );

type Sent = { sequence: number; status: string; headers: Record<string, string>; body: string; type: string };

async function sentTo(db: Db, name: string): Promise<Sent[]> {
  const { rows } = await db.query<{
    sequence: string;
    status: string;
    headers: Record<string, string>;
    payload: Uint8Array;
    content_type: string;
  }>(
    `select d.sequence, d.status, m.headers, m.payload, m.content_type from stock_sync.deliveries d
     join stock_sync.messages m on m.id = d.message_id where d.subscription = $1 order by d.sequence`,
    [name],
  );
  return rows.map((r) => ({
    sequence: Number(r.sequence),
    status: r.status,
    headers: r.headers,
    body: Buffer.from(r.payload).toString("utf8"),
    type: r.content_type,
  }));
}

const lines = (sent: Sent[]) =>
  sent.flatMap((s) =>
    s.body
      .trim()
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l)),
  );

describeEachDb("per-subscription bodies", (t) => {
  const db = () => t().db;

  it("a full and a delta: every key once per full, own sequence, parts within rows_per_message; CSV subscription unchanged", async () => {
    const fx = await stockFixture(db(), yaml(ndjson("nd")));
    const full = (await fx.exporter.run("full", { trigger: "test" })) as RunResult;
    expect(full.status).toBe("enqueued");
    const plain = await stockMessages(db(), "oms");
    expect(plain).toHaveLength(1);
    expect(plain[0]!.rows).toHaveLength(full.rows);
    const nd = await sentTo(db(), "nd");
    expect(nd.map((s) => s.sequence)).toEqual(nd.map((_, i) => i + 1));
    expect(
      nd.every((s) => s.type === "application/x-ndjson" && s.headers["stock-sync-kind"] === "full"),
    ).toBe(true);
    expect(nd.map((s) => s.headers["stock-sync-part"])).toEqual(nd.map((_, i) => `${i + 1}/${nd.length}`));
    const rows = lines(nd);
    expect(rows).toHaveLength(full.rows);
    expect(new Set(rows.map((r) => `${r.sku}|${r.store}`)).size).toBe(full.rows);
    expect(Object.keys(rows[0]!)).toEqual(["sku", "store", "qty", "record_id"]);
    for (const s of nd) expect(s.body.trim().split("\n").length).toBeLessThanOrEqual(500);
    const csvKeys = new Map(plain[0]!.rows.map((r) => [`${r.sku}|${r.location}`, r.quantity]));
    for (const r of rows) expect(csvKeys.get(`${r.sku}|${r.store}`)).toBe(r.qty);

    await db().query(
      "update inventory.stock_on_hand set quantity = quantity + 7 where (sku, location) in (select sku, location from inventory.stock_on_hand order by sku, location limit 3)",
    );
    const delta = (await fx.exporter.run("delta", { trigger: "test" })) as RunResult;
    expect(delta.status).toBe("enqueued");
    const after = await sentTo(db(), "nd");
    const last = after.at(-1)!;
    expect(last.headers["stock-sync-kind"]).toBe("delta");
    expect(last.sequence).toBe(nd.length + 1);
    expect(lines([last])).toHaveLength(delta.rows);
  });

  it("a newer full supersedes that subscription's undelivered stock messages", async () => {
    const fx = await stockFixture(db(), yaml(ndjson("nd2")));
    await fx.exporter.run("full", { trigger: "test" });
    const first = await sentTo(db(), "nd2");
    await fx.exporter.run("full", { trigger: "test", force: true });
    const all = await sentTo(db(), "nd2");
    expect(all.slice(0, first.length).every((s) => s.status === "superseded")).toBe(true);
    expect(all.slice(first.length).every((s) => s.status === "pending")).toBe(true);
    expect(all.at(-1)!.sequence).toBe(first.length * 2);
  });

  it("max_bytes: no body over it; a template over the message; a row alone over it fails the run naming it", async () => {
    const tpl = sub(
      "tpl",
      `    body: { format: json, template: '{"seq": sequence, "of": parts, "e": [rows.{"s": sku, "l": location, "q": quantity}]}', max_bytes: 4kb }\n`,
    );
    const fx = await stockFixture(db(), yaml(tpl));
    const full = (await fx.exporter.run("full", { trigger: "test" })) as RunResult;
    const sent = await sentTo(db(), "tpl");
    expect(sent.length).toBeGreaterThan(1);
    for (const s of sent) {
      expect(Buffer.byteLength(s.body)).toBeLessThanOrEqual(4096);
      const b = JSON.parse(s.body);
      expect(b.seq).toBe(s.sequence);
      expect(b.of).toBe(sent.length);
    }
    expect(sent.flatMap((s) => JSON.parse(s.body).e)).toHaveLength(full.rows);

    const tiny = await stockFixture(
      db(),
      yaml(sub("tiny", "    body: { format: ndjson, max_bytes: 20 }\n")),
      { seed: false },
    );
    await expect(tiny.exporter.run("full", { trigger: "test", force: true })).rejects.toThrow(
      /subscription tiny: the row sku ".*", location ".*" alone renders to \d+ bytes, over body.max_bytes \(20\)/,
    );
    const { rows } = await db().query<{ status: string; detail: string }>(
      "select status, detail from stock_sync.stock_runs order by id desc limit 1",
    );
    expect(rows[0]).toMatchObject({ status: "failed", detail: expect.stringContaining("alone renders") });
  });

  it("code mapping: skip is counted in the run's detail, fail lists the first unmapped codes, keep sends ours", async () => {
    const dir = await testDir("stock-sync-map-");
    const { rows: locs } = await db().query<{ location: string }>(
      "select distinct location from inventory.stock_on_hand order by location",
    );
    const mapped = locs.slice(0, -1).map((l) => l.location);
    const file = join(dir, "locations.csv");
    await writeFile(file, `ours,theirs\n${mapped.map((l) => `${l},OMS-${l}`).join("\n")}\n`);
    const block = (name: string, missing: string) =>
      sub(
        name,
        `    body: { format: ndjson }\n    map: { location: { file: "${file}", missing: ${missing} } }\n`,
      );
    const fx = await stockFixture(db(), yaml(block("skip", "skip") + block("keep", "keep")));
    const full = (await fx.exporter.run("full", { trigger: "test" })) as RunResult;
    const skipped = lines(await sentTo(db(), "skip"));
    expect(skipped.every((r) => r.location.startsWith("OMS-"))).toBe(true);
    expect(full.detail).toBe(`skip: ${full.rows - skipped.length} rows skipped (no mapping)`);
    const { rows } = await db().query<{ detail: string }>(
      "select detail from stock_sync.stock_runs order by id desc limit 1",
    );
    expect(rows[0]!.detail).toBe(full.detail);
    const kept = lines(await sentTo(db(), "keep"));
    expect(kept).toHaveLength(full.rows);
    expect(kept.filter((r) => r.location === locs.at(-1)!.location).length).toBe(full.rows - skipped.length);

    const failing = await stockFixture(db(), yaml(block("fail", "fail")), { seed: false });
    await expect(failing.exporter.run("full", { trigger: "test", force: true })).rejects.toThrow(
      `subscription fail: no mapping for location "${locs.at(-1)!.location}" (map missing: fail)`,
    );
  });

  it("--out --subscription prints exactly the bodies the subscription would receive, and changes nothing", async () => {
    const fx = await stockFixture(db(), yaml(ndjson("nd3")));
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on("data", (c: Buffer) => chunks.push(c));
    const written = await fx.exporter.run("full", { trigger: "test", out, subscription: "nd3" });
    expect(written.status).toBe("written");
    const printed = Buffer.concat(chunks)
      .toString("utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(await sentTo(db(), "nd3")).toHaveLength(0);
    await fx.exporter.run("full", { trigger: "test" });
    const sent = lines(await sentTo(db(), "nd3"));
    const strip = (r: Record<string, unknown>) => ({ ...r, record_id: undefined });
    // the same rows in the same order; record ids differ only because the snapshot is another
    expect(printed.map(strip)).toEqual(sent.map(strip));
    await expect(fx.exporter.run("full", { trigger: "test", out, subscription: "nope" })).rejects.toThrow(
      'no subscription "nope"',
    );
  });
});
