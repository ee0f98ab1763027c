import { describe, expect, it } from "vitest";
import type { BodyConfig } from "../../src/formats/config.js";
import { Cutter, type CutMessage, OversizeRowError } from "../../src/formats/cut.js";
import { type Row, recordId } from "../../src/formats/fields.js";
import { compileBody } from "../../src/formats/render.js";

const body = (b: Partial<BodyConfig>): BodyConfig => ({
  format: "csv",
  columns: ["sku", "location", "quantity"],
  header: true,
  delimiter: ",",
  template: null,
  rows_per_message: null,
  max_bytes: null,
  ...b,
});
const run = { kind: "full" as const, snapshot_id: "full-1", taken_at: "2026-12-01T09:00:00.000Z" };
const msg = { ...run, sequence: 7, part: 1, parts: 1 };
const rows = (n: number): Row[] =>
  Array.from({ length: n }, (_, i) => ({ sku: `S${i}`, location: "L1", quantity: i }));

async function cut(b: BodyConfig, input: Row[]): Promise<CutMessage[]> {
  const out: CutMessage[] = [];
  const cutter = new Cutter(compileBody(b, 50_000), run, async (m) => void out.push(m), "subscription t");
  for (const r of input) await cutter.push(r);
  await cutter.end(true);
  return out;
}

describe("bodies", () => {
  it("csv: output names, delimiter, quoting, no header", async () => {
    const b = compileBody(
      body({
        columns: [{ ref: "sku" }, { store: "location" }, { qty: "quantity" }],
        delimiter: ";",
      }),
      10,
    );
    const text = (await b.render([{ sku: 'a;"b"', location: "L", quantity: 3 }], msg)).toString();
    expect(text).toBe('ref;store;qty\n"a;""b""";L;3\n');
    const bare = compileBody(body({ header: false }), 10);
    expect((await bare.render(rows(1), msg)).toString()).toBe("S0,L1,0\n");
    expect(b.contentType).toBe("text/csv");
  });

  it("ndjson: one object per row, message fields usable as columns", async () => {
    const b = compileBody(
      body({
        format: "ndjson",
        columns: ["sku", { effectiveDate: "taken_at" }],
      }),
      10,
    );
    expect((await b.render(rows(2), msg)).toString()).toBe(
      '{"sku":"S0","effectiveDate":"2026-12-01T09:00:00.000Z"}\n{"sku":"S1","effectiveDate":"2026-12-01T09:00:00.000Z"}\n',
    );
    expect(b.late).toBe(false);
  });

  it("json without a template: the envelope and the rows", async () => {
    const b = compileBody(body({ format: "json" }), 10);
    expect(JSON.parse((await b.render(rows(1), msg)).toString())).toEqual({
      ...msg,
      rows: [{ sku: "S0", location: "L1", quantity: 0 }],
    });
    expect(b.late).toBe(true);
  });

  it("a template over the message; with one row per message, its fields are top-level too", async () => {
    const t = compileBody(body({ format: "json", template: '{"n": $count(rows), "seq": sequence}' }), 10);
    expect(JSON.parse((await t.render(rows(3), msg)).toString())).toEqual({ n: 3, seq: 7 });
    const one = compileBody(
      body({ format: "json", template: '{"quantity": quantity}', rows_per_message: 1 }),
      10,
    );
    expect((await one.render(rows(1), msg)).toString()).toBe('{"quantity":0}');
  });

  it("record ids are stable per key and snapshot", () => {
    expect(recordId("s1", "A", "B")).toBe(recordId("s1", "A", "B"));
    expect(recordId("s1", "A", "B")).not.toBe(recordId("s2", "A", "B"));
    expect(recordId("s1", "A", "B")).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
  });
});

describe("cutting a run into messages", () => {
  it("by rows: every row once, in order, none over rows_per_message", async () => {
    const out = await cut(body({ format: "ndjson", rows_per_message: 3 }), rows(10));
    expect(out.map((m) => m.rows)).toEqual([3, 3, 3, 1]);
    const all = out.flatMap((m) =>
      m
        .body!.toString()
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).sku),
    );
    expect(all).toEqual(rows(10).map((r) => r.sku));
  });

  it("by bytes: no body over max_bytes, header counted", async () => {
    const out = await cut(body({ max_bytes: 60 }), rows(30));
    for (const m of out) expect(m.body!.length).toBeLessThanOrEqual(60);
    expect(out.reduce((n, m) => n + m.rows, 0)).toBe(30);
    expect(out.length).toBeGreaterThan(3);
  });

  it("a template message over max_bytes is halved until it fits", async () => {
    const b = body({ format: "json", template: '{"e": [rows.{"s": sku, "q": quantity}]}', max_bytes: 100 });
    const out = await cut(b, rows(20));
    for (const m of out) expect(m.body!.length).toBeLessThanOrEqual(100);
    expect(out.flatMap((m) => JSON.parse(m.body!.toString()).e.map((e: { s: string }) => e.s))).toEqual(
      rows(20).map((r) => r.sku),
    );
  });

  it("a row that alone exceeds max_bytes is an error naming it, never dropped", async () => {
    const big = [{ sku: "X".repeat(200), location: "L9", quantity: 1 }];
    await expect(cut(body({ max_bytes: 100 }), big)).rejects.toThrow(OversizeRowError);
    await expect(cut(body({ max_bytes: 100 }), big)).rejects.toThrow(
      /location "L9" alone renders to \d+ bytes/,
    );
    const t = body({ format: "json", template: '{"r": rows}', max_bytes: 100 });
    await expect(cut(t, big)).rejects.toThrow(/alone renders/);
  });

  it("late bodies keep their rows for the final rendering, measured with the widest values", async () => {
    const out = await cut(body({ format: "json", max_bytes: 300 }), rows(12));
    expect(out.every((m) => m.body === null && m.pending!.length === m.rows)).toBe(true);
    const b = compileBody(body({ format: "json", max_bytes: 300 }), 10);
    for (const [i, m] of out.entries()) {
      const final = await b.render(m.pending!, { ...msg, part: i + 1, parts: out.length });
      expect(final.length).toBeLessThanOrEqual(300);
    }
  });

  it("an empty full still sends one message; an empty delta none", async () => {
    expect(await cut(body({}), [])).toHaveLength(1);
    const out: CutMessage[] = [];
    const c = new Cutter(
      compileBody(body({}), 10),
      { ...run, kind: "delta" },
      async (m) => void out.push(m),
      "t",
    );
    await c.end(false);
    expect(out).toHaveLength(0);
  });
});
