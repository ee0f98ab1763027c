import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "csv-parse";
import type { Db, Queryable } from "../db/db.js";
import { ConnectorError } from "../errors.js";

/** The demo source tables, in load order (parents before children). */
export const DEMO_TABLES = [
  "items",
  "locations",
  "stock_on_hand",
  "reservations",
  "safety_stock",
  "incoming_stock",
] as const;

export type DemoTable = (typeof DEMO_TABLES)[number];

export type SeedOptions = {
  /**
   * Directory holding `schema.sql` and one `<table>.csv` per entry of `DEMO_TABLES`.
   * @example "fixtures/inventory"
   */
  fixturesDir: string;
  /** Reference time for the relative CSV columns (`expires_in_hours`, `expected_in_days`). @default new Date() */
  now?: Date;
};

export type SeedResult = { seeded: boolean; counts: Record<string, number> };

type CsvValue = string | number | boolean | null;
type ColumnType = "text" | "integer" | "boolean";

type CsvColumn = {
  name: string;
  type: ColumnType;
  /** An empty cell becomes null; otherwise an empty cell is rejected. */
  nullable?: boolean;
  /** Relative columns load into another table column through an expression; `$now` is the load time. */
  into?: { column: string; expr: string };
};

type TableLoad = { table: DemoTable; columns: readonly CsvColumn[] };

const BATCH_ROWS = 500;
// Any constant works; it only has to be the same in every stock-sync process.
const SEED_LOCK = 0x5345_4544; // "SEED"

const col = (name: string, type: ColumnType, extra: Partial<CsvColumn> = {}): CsvColumn => ({
  name,
  type,
  ...extra,
});

const LOADS: readonly TableLoad[] = [
  { table: "items", columns: [col("sku", "text"), col("name", "text"), col("active", "boolean")] },
  {
    table: "locations",
    columns: [col("code", "text"), col("name", "text"), col("kind", "text"), col("active", "boolean")],
  },
  {
    table: "stock_on_hand",
    columns: [col("sku", "text"), col("location", "text"), col("quantity", "integer")],
  },
  {
    table: "reservations",
    columns: [
      col("sku", "text"),
      col("location", "text"),
      col("quantity", "integer"),
      col("status", "text"),
      col("expires_in_hours", "integer", {
        nullable: true,
        into: { column: "expires_at", expr: "$now + expires_in_hours * interval '1 hour'" },
      }),
    ],
  },
  {
    table: "safety_stock",
    columns: [col("sku", "text"), col("location", "text"), col("quantity", "integer")],
  },
  {
    table: "incoming_stock",
    columns: [
      col("sku", "text"),
      col("location", "text"),
      col("quantity", "integer"),
      // ::date takes the session time zone, as current_date does in the sellable query
      col("expected_in_days", "integer", {
        into: { column: "expected_on", expr: "$now::date + expected_in_days" },
      }),
      col("status", "text"),
    ],
  },
];

/**
 * Creates the reference `inventory` schema and loads the demo CSVs, in one transaction, unless
 * `inventory.items` already exists: a second start reuses (and never touches) the data.
 * @example await seedDemoSource(db, { fixturesDir: "fixtures/inventory" })
 */
export async function seedDemoSource(db: Db, opts: SeedOptions): Promise<SeedResult> {
  if (await demoSourceExists(db)) return { seeded: false, counts: {} };
  const now = opts.now ?? new Date();
  const schema = await readFile(join(opts.fixturesDir, "schema.sql"), "utf8");
  return db.tx(async (tx) => {
    // a concurrent first start waits here, then finds the tables and leaves them alone
    await tx.query("select pg_advisory_xact_lock($1)", [SEED_LOCK]);
    if (await demoSourceCommitted(tx)) return { seeded: false, counts: {} };
    await tx.query(schema);
    const counts: Record<string, number> = {};
    for (const load of LOADS) counts[load.table] = await loadCsv(tx, opts.fixturesDir, load, now);
    return { seeded: true, counts };
  });
}

/** Whether the demo schema is there, without creating anything (read-only commands ask this). */
export async function demoSourceExists(db: Queryable): Promise<boolean> {
  const res = await db.query<{ t: string | null }>("select to_regclass('inventory.items')::text as t");
  return Boolean(res.rows[0]?.t);
}

/**
 * The re-check after the lock. to_regclass reads this backend's catalog cache, which can miss a
 * table that a concurrent seeder committed while we waited; a query on pg_class takes a new snapshot.
 */
async function demoSourceCommitted(db: Queryable): Promise<boolean> {
  const res = await db.query<{ found: boolean }>(`\
select exists (select 1 from pg_catalog.pg_class c
               join pg_catalog.pg_namespace n on n.oid = c.relnamespace
               where n.nspname = 'inventory' and c.relname = 'items') as found`);
  return res.rows[0]?.found === true;
}

/** Streams one CSV into its table in batches; returns the number of rows inserted. */
async function loadCsv(db: Queryable, dir: string, load: TableLoad, now: Date): Promise<number> {
  const file = join(dir, `${load.table}.csv`);
  const sql = insertSql(load);
  const usesNow = load.columns.some((c) => c.into);
  let sawHeader = false;
  const parser = parse({
    bom: true,
    skip_empty_lines: true,
    info: true,
    columns: (header: string[]) => {
      sawHeader = true;
      checkHeader(file, header, load.columns);
      return header;
    },
  });
  const input = createReadStream(file);
  // pipe() does not forward errors: without this a missing file would leave the loop waiting forever
  input.on("error", (err) => parser.destroy(err));
  input.pipe(parser);

  let batch: CsvValue[][] = [];
  let count = 0;
  const flush = async () => {
    const values: unknown[] = transpose(batch, load.columns.length);
    await db.query(sql, usesNow ? [...values, now] : values);
    count += batch.length;
    batch = [];
  };
  try {
    for await (const { record, info } of parser as AsyncIterable<ParsedRecord>) {
      batch.push(load.columns.map((c) => castCell(record[c.name] ?? "", c, `${file}:${info.lines}`)));
      if (batch.length >= BATCH_ROWS) await flush();
    }
  } finally {
    input.destroy();
  }
  if (!sawHeader) throw invalid(`${file}: empty file, expected header ${load.columns.map((c) => c.name)}`);
  if (batch.length > 0) await flush();
  return count;
}

type ParsedRecord = { record: Record<string, string>; info: { lines: number } };

function checkHeader(file: string, header: readonly string[], columns: readonly CsvColumn[]): void {
  const missing = columns.find((c) => !header.includes(c.name));
  if (missing) throw invalid(`${file}: header is missing column "${missing.name}" (got ${header.join(",")})`);
  const unknown = header.find((h) => !columns.some((c) => c.name === h));
  if (unknown) throw invalid(`${file}: header has unexpected column "${unknown}"`);
}

function castCell(raw: string, c: CsvColumn, where: string): CsvValue {
  if (raw === "") {
    if (c.nullable) return null;
    throw invalid(`${where}: column "${c.name}" is empty`);
  }
  if (c.type === "text") return raw;
  if (c.type === "boolean") {
    if (raw === "true" || raw === "false") return raw === "true";
    throw invalid(`${where}: column "${c.name}" expects true or false, got "${raw}"`);
  }
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw) || n < -2_147_483_648 || n > 2_147_483_647) {
    throw invalid(`${where}: column "${c.name}" expects an integer, got "${raw}"`);
  }
  return n;
}

const invalid = (message: string) => new ConnectorError("INVALID_INPUT", message);

/** One array per column, so a batch is one statement with a fixed number of parameters. */
function transpose(rows: readonly CsvValue[][], width: number): CsvValue[][] {
  return Array.from({ length: width }, (_, i) => rows.map((r) => r[i] ?? null));
}

/** `insert into inventory.t (...) select ... from unnest($1::text[], ...)`; `$now` is the last parameter. */
function insertSql(load: TableLoad): string {
  const n = load.columns.length;
  const now = `$${n + 1}::timestamptz`;
  const targets = load.columns.map((c) => c.into?.column ?? c.name);
  const exprs = load.columns.map((c) => (c.into ? c.into.expr.replaceAll("$now", now) : c.name));
  const arrays = load.columns.map((c, i) => `$${i + 1}::${c.type}[]`);
  return `insert into inventory.${load.table} (${targets.join(", ")})
select ${exprs.join(", ")}
from unnest(${arrays.join(", ")}) as t(${load.columns.map((c) => c.name).join(", ")})`;
}
