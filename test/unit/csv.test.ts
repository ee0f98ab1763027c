import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { gunzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { coalesce, encodeCsv, PartWriter, type StockRow } from "../../src/export/csv.js";

const columns = ["sku", "location", "quantity"];

// Values fast-csv has to quote or escape, among plain ones.
const rows: StockRow[] = Array.from({ length: 2_500 }, (_, i) => ({
  sku: ["a,b", 'q"uote', "line\nbreak", "pipe|x", "", `SKU-${i}`][i % 6]!,
  location: `LOC-${i % 7}`,
  quantity: i * 13,
}));

describe("PartWriter", () => {
  let dir = "";
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function writeParts(gzip: boolean): Promise<Buffer[]> {
    dir = await mkdtemp(join(tmpdir(), "stock-sync-csv-"));
    const writer = new PartWriter(dir, { columns, gzip, partRows: 1_000 });
    for (const row of rows) await writer.write(row);
    const parts = await writer.finish();
    expect(parts.map((p) => p.rows)).toEqual([1_000, 1_000, 500]);
    return Promise.all(parts.map((p) => readFile(p.path)));
  }

  it("writes each part as a complete CSV, the same bytes as encodeCsv of its rows", async () => {
    const plain = await writeParts(false);
    for (const [i, body] of plain.entries()) {
      const slice = rows.slice(i * 1_000, (i + 1) * 1_000);
      expect(body.equals(await encodeCsv(slice, { columns, gzip: false }))).toBe(true);
    }
  });

  it("a gzip part decompresses to exactly the plain part", async () => {
    const plain = await writeParts(false);
    await rm(dir, { recursive: true, force: true });
    const gzipped = await writeParts(true);
    expect(gzipped.map((b, i) => gunzipSync(b).equals(plain[i]!))).toEqual([true, true, true]);
  });
});

describe("coalesce", () => {
  it("passes every byte through, in order, in pieces of at least the given size", async () => {
    const input = Array.from({ length: 1_000 }, (_, i) => Buffer.from(`row ${i}\n`));
    const pieces: Buffer[] = [];
    for await (const piece of Readable.from(input).pipe(coalesce(1_024))) pieces.push(piece as Buffer);
    expect(Buffer.concat(pieces).equals(Buffer.concat(input))).toBe(true);
    expect(pieces.slice(0, -1).every((p) => p.length >= 1_024)).toBe(true);
    expect(pieces.length).toBeLessThan(10);
  });
});
