import { PassThrough, Writable } from "node:stream";
import { expect, it } from "vitest";
import type { Db, Tx } from "../../src/db/db.js";
import { createExporter } from "../../src/export/exporter.js";
import type { RunResult } from "../../src/export/run.js";
import { describeEachDb } from "../helpers/db.js";
import { STOCK_SUB, stockFixture } from "../helpers/stock.js";

/** `db` as a source whose transactions offer COPY TO only through `copyTo` (counted), or not at all. */
function source(db: Db, copy: boolean, calls = { n: 0 }): Db {
  const wrap = (tx: Tx): Tx => ({
    ...tx,
    copyTo:
      copy && tx.copyTo
        ? (sql) => {
            calls.n++;
            return tx.copyTo!(sql);
          }
        : undefined,
  });
  return { ...db, tx: (fn, opts) => db.tx((tx) => fn(wrap(tx)), opts) };
}

const AWKWARD = `drop schema if exists awk cascade; create schema awk;
  create table awk.t (ord int, sku text, location varchar(20), quantity int, note text, big int8,
                      price numeric(10, 3), code char(4));
  insert into awk.t values
    (1, 'a,b', 'L1', 1, 'say "hi"', 9007199254740993, 1.500, 'x'),
    (2, e'line\\nbreak', e'L\\r1', -2, '', -1, 0, null),
    (3, 'pipe|x', '', 0, null, null, null, 'ab'),
    (4, '\\.', ' L ', 2147483647, 'ü€', 0, -12.345, ''),
    (5, '"', ',', 7, '""', 1, 0.001, '|');
  insert into awk.t select g, 'S' || g, 'L' || (g % 3), g % 50,
    case g % 5 when 0 then '' when 1 then 'n|' || g when 2 then 'q"' || g when 3 then null else 'plain' end,
    g::int8 * 1000000007, g / 7.0, null
  from generate_series(6, 6000) g;`;

const COLUMNS = "[sku, location, quantity, note, big, price, code]";

describeEachDb("stock full read with COPY", (t) => {
  const db = () => t().db;

  async function fixture(columns = COLUMNS) {
    await db().query(AWKWARD);
    // All three queries or none (config check); these tests run fulls only.
    const yaml = `${STOCK_SUB}stock:\n  format: { part_rows: 777, columns: ${columns} }\n  capture: { mode: full_diff }\n  queries:\n    sellable: "select sku, location, quantity, note, big, price, code from awk.t where $1::int >= 0 order by ord"\n    sellable_keys: "select sku, location, quantity, note, big, price, code from awk.t where (sku, location) in (select * from unnest($2::text[], $3::text[]))"\n    time_candidates: none\n`;
    return stockFixture(db(), yaml, { seed: false });
  }

  const payloads = async (runId: number | null) =>
    (
      await db().query<{ payload: Uint8Array }>(
        `select payload from stock_sync.messages where run_id = $1
         order by split_part(headers->>'stock-sync-part', '/', 1)::int`,
        [runId],
      )
    ).rows.map((r) => Buffer.from(r.payload));

  it("COPY and cursor parts are the same bytes, awkward values included", async ({ skip }) => {
    if (!t().url) return skip("PGlite has no COPY TO STDOUT: it always reads with the cursor");
    const fx = await fixture();
    const calls = { n: 0 };
    const run = (copy: boolean) =>
      createExporter({ ...fx.deps, source: source(db(), copy, calls) }).run("full", {
        trigger: "test",
        force: true,
      }) as Promise<RunResult>;
    const viaCopy = await payloads((await run(true)).runId);
    expect(calls.n).toBe(1);
    const viaCursor = await payloads((await run(false)).runId);
    expect(calls.n).toBe(1);
    expect(viaCopy).toHaveLength(8); // 6,000 rows in parts of 777
    expect(viaCopy.map((b) => b.toString())).toEqual(viaCursor.map((b) => b.toString()));
    expect(viaCopy[0]!.toString().split("\n").slice(0, 2)).toEqual([
      "sku,location,quantity,note,big,price,code",
      '"a,b",L1,1,"say ""hi""",9007199254740993,1.500,x   ',
    ]);
  });

  it.each([
    ["the configured columns", COLUMNS],
    ["the key columns only", "[sku, location, quantity]"],
  ])("--out writes the same bytes either way (%s)", async (_, columns) => {
    const fx = await fixture(columns);
    const calls = { n: 0 };
    const out = async (copy: boolean) => {
      const sink = new PassThrough();
      const chunks: Buffer[] = [];
      sink.on("data", (c: Buffer) => chunks.push(c));
      await createExporter({ ...fx.deps, source: source(db(), copy, calls) }).run("full", {
        trigger: "test",
        out: sink,
      });
      return Buffer.concat(chunks).toString();
    };
    const viaCopy = await out(true);
    expect(viaCopy.split("\n").length).toBeGreaterThan(6_000);
    expect(viaCopy).toBe(await out(false));
    expect(calls.n).toBe(t().url ? 1 : 0);
  });

  it.for([
    { path: "COPY", copy: true },
    { path: "cursor", copy: false },
  ])(
    "$path: a failure while writing --out ends the run with that error, and the source stays usable",
    { timeout: 30_000 },
    async ({ copy }, { skip }) => {
      if (copy && !t().url) return skip("PGlite has no COPY TO STDOUT: the cursor case covers it");
      const fx = await fixture();
      let written = 0;
      const failing = new Writable({
        write(_chunk, _encoding, done) {
          done(++written > 2 ? new Error("disk full") : null);
        },
      });
      failing.on("error", () => undefined);
      const run = createExporter({ ...fx.deps, source: source(db(), copy) }).run("full", {
        trigger: "test",
        out: failing,
      });
      await expect(run).rejects.toThrow(/disk full|write after/);
      for (let i = 0; i < 6; i++) expect((await db().query("select 1 as one")).rows).toEqual([{ one: 1 }]);
    },
  );
});
