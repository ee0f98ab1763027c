import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "csv-parse/sync";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Db, Queryable, Row } from "../../src/db/db.js";
import { openPostgres } from "../../src/db/pg.js";
import { DEFAULT_SELLABLE } from "../../src/inventory/queries.js";
import { DEMO_TABLES, seedDemoSource } from "../../src/inventory/seed.js";
import { describeEachDb } from "../helpers/db.js";

const FIXTURES = fileURLToPath(new URL("../../fixtures/inventory/", import.meta.url));

const NOW = new Date();
const DAY_MS = 86_400_000;
const byNumber = (a: number, b: number) => a - b;

/** The calendar day `days` after NOW's day in the session time zone (the loader's ::date does the same). */
async function dayAfterNow(db: Queryable, days: number): Promise<string> {
  const res = await db.query<{ d: string }>("select ($1::timestamptz)::date::text as d", [NOW]);
  return new Date(Date.parse(`${res.rows[0]!.d}T00:00:00Z`) + days * DAY_MS).toISOString().slice(0, 10);
}

async function readCsv(file: string): Promise<Record<string, string>[]> {
  return parse(await readFile(join(FIXTURES, file), "utf8"), { columns: true, skip_empty_lines: true });
}

async function csvLineCount(table: string): Promise<number> {
  const text = await readFile(join(FIXTURES, `${table}.csv`), "utf8");
  return text.split("\n").filter((l) => l.trim() !== "").length - 1; // minus the header
}

/** A digest of every row of every demo table, to prove a second seed changes nothing. */
async function fingerprint(db: Queryable): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const t of DEMO_TABLES) {
    const res = await db.query<{ md5: string }>(
      `select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) as md5 from inventory.${t} x`,
    );
    out[t] = res.rows[0]!.md5;
  }
  return out;
}

type SellableRow = { sku: string; location: string; quantity: number };

/** The sellable formula recomputed in JS from the loaded rows, as an independent check of the SQL. */
async function expectedSellable(db: Queryable, days: number): Promise<Map<string, number>> {
  const rows = async <T extends Row>(sql: string, values?: unknown[]) =>
    (await db.query<T>(sql, values)).rows;
  type Q = { sku: string; location: string; quantity: number };
  const [clock] = await rows<{ horizon: string; now: Date }>(
    "select (current_date + $1::int)::text as horizon, now() as now",
    [days],
  );
  const sum = (list: Q[]) => {
    const m = new Map<string, number>();
    for (const r of list)
      m.set(`${r.sku}|${r.location}`, (m.get(`${r.sku}|${r.location}`) ?? 0) + r.quantity);
    return m;
  };
  const onHand = sum(await rows<Q>("select sku, location, quantity from inventory.stock_on_hand"));
  const reserved = sum(
    (
      await rows<Q & { status: string; expires_at: Date | null }>("select * from inventory.reservations")
    ).filter((r) => r.status === "open" && (r.expires_at === null || r.expires_at > clock!.now)),
  );
  const safety = sum(await rows<Q>("select sku, location, quantity from inventory.safety_stock"));
  const incoming = sum(
    await rows<Q>(
      "select sku, location, quantity from inventory.incoming_stock where status = 'expected' and expected_on::text <= $1",
      [clock!.horizon],
    ),
  );
  const items = new Set(
    (await rows<{ sku: string }>("select sku from inventory.items where active")).map((r) => r.sku),
  );
  const locs = new Set(
    (await rows<{ code: string }>("select code from inventory.locations where active")).map((r) => r.code),
  );
  const out = new Map<string, number>();
  for (const key of new Set([...onHand.keys(), ...incoming.keys()])) {
    const [sku, location] = key.split("|") as [string, string];
    if (!items.has(sku) || !locs.has(location)) continue;
    const net = (onHand.get(key) ?? 0) - (reserved.get(key) ?? 0) - (safety.get(key) ?? 0);
    out.set(key, Math.max(net, 0) + (incoming.get(key) ?? 0));
  }
  return out;
}

describeEachDb("seedDemoSource", (t) => {
  let db: Db;
  let first: Awaited<ReturnType<typeof seedDemoSource>>;

  beforeAll(async () => {
    db = t().db;
    first = await seedDemoSource(db, { fixturesDir: FIXTURES, now: NOW });
  });

  it("loads every CSV row and reports per-table counts in load order", async () => {
    expect(first.seeded).toBe(true);
    expect(Object.keys(first.counts)).toEqual([...DEMO_TABLES]);
    for (const t of DEMO_TABLES) {
      const expected = await csvLineCount(t);
      expect(first.counts[t], t).toBe(expected);
      const res = await db.query<{ n: number }>(`select count(*)::int as n from inventory.${t}`);
      expect(res.rows[0]!.n, t).toBe(expected);
    }
  });

  it("holds foreign keys: no orphans, and the constraints reject new ones", async () => {
    for (const t of ["stock_on_hand", "reservations", "safety_stock", "incoming_stock"]) {
      const res = await db.query<{ n: number }>(
        `select count(*)::int as n from inventory.${t} x
         where not exists (select 1 from inventory.items i where i.sku = x.sku)
            or not exists (select 1 from inventory.locations l where l.code = x.location)`,
      );
      expect(res.rows[0]!.n, t).toBe(0);
    }
    await expect(
      db.query("insert into inventory.reservations (sku, location, quantity) values ($1, $2, 1)", [
        "SKU-99999",
        "WH-PAR",
      ]),
    ).rejects.toThrow(/foreign key/);
  });

  it("converts expected_in_days and expires_in_hours against the load time", async () => {
    const csv = await readCsv("incoming_stock.csv");
    const threeDays = csv.find((r) => r["expected_in_days"] === "3")!;
    const res = await db.query<{ expected_on: string }>(
      "select expected_on::text from inventory.incoming_stock where sku = $1 and location = $2 and quantity = $3",
      [threeDays["sku"], threeDays["location"], Number(threeDays["quantity"])],
    );
    expect(res.rows.map((r) => r.expected_on)).toContain(await dayAfterNow(db, 3));

    const all = await db.query<{ k: string }>(
      "select concat_ws('|', sku, location, quantity, status, expected_on) as k from inventory.incoming_stock",
    );
    const fromCsv: string[] = [];
    for (const r of csv) {
      const day = await dayAfterNow(db, Number(r["expected_in_days"]));
      fromCsv.push([r["sku"], r["location"], r["quantity"], r["status"], day].join("|"));
    }
    expect(all.rows.map((r) => r.k).sort()).toEqual(fromCsv.sort());

    const reservations = await readCsv("reservations.csv");
    const expiring = await db.query<{ sku: string; location: string; expires_at: Date }>(
      "select sku, location, expires_at from inventory.reservations where expires_at is not null",
    );
    const hours = reservations
      .filter((r) => r["expires_in_hours"] !== "")
      .map((r) => Number(r["expires_in_hours"]));
    expect(
      expiring.rows.map((r) => (r.expires_at.getTime() - NOW.getTime()) / 3_600_000).sort(byNumber),
    ).toEqual(hours.sort(byNumber));
  });

  it("returns seeded:false on a second call and changes nothing", async () => {
    const before = await fingerprint(db);
    const second = await seedDemoSource(db, { fixturesDir: FIXTURES, now: new Date(NOW.getTime() + DAY_MS) });
    expect(second).toEqual({ seeded: false, counts: {} });
    expect(await fingerprint(db)).toEqual(before);
  });

  it("runs the shipped sellable query: non-negative, active keys only, matches the formula", async () => {
    const sql = DEFAULT_SELLABLE;
    for (const days of [0, 7, 30]) {
      const res = await db.query<SellableRow>(sql, [days]);
      expect(res.rows.length).toBeGreaterThan(1000);
      expect(res.rows.every((r) => Number.isInteger(r.quantity) && r.quantity >= 0)).toBe(true);
      expect(res.rows.some((r) => r.location === "ST-NTE01")).toBe(false); // the closed store
      const got = new Map(res.rows.map((r) => [`${r.sku}|${r.location}`, r.quantity]));
      expect(got.size).toBe(res.rows.length);
      expect(got).toEqual(await expectedSellable(db, days));
    }
  });
});

describeEachDb("seedDemoSource with a broken CSV, and two first starts at once", (t) => {
  let dir: string;
  let db: Db;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "seed-test-"));
    await cp(FIXTURES, dir, { recursive: true });
    db = t().db;
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("names the file and the missing column, and leaves nothing behind", async () => {
    const file = join(dir, "safety_stock.csv");
    const text = await readFile(file, "utf8");
    const broken = text.replace(/^sku,location,quantity\n/, "sku,location,qty\n");
    expect(broken).not.toBe(text);
    await writeFile(file, broken);

    await expect(seedDemoSource(db, { fixturesDir: dir, now: NOW })).rejects.toThrow(
      /safety_stock\.csv.*missing column "quantity"/,
    );
    const res = await db.query<{ t: string | null }>("select to_regclass('inventory.items')::text as t");
    expect(res.rows[0]!.t).toBeNull();
  });

  it("two processes seeding an empty source at once load it exactly once", async () => {
    const { url } = t();
    const other = url ? openPostgres(url, { poolSize: 2 }) : db; // a second process, where there can be one
    try {
      const results = await Promise.all([
        seedDemoSource(db, { fixturesDir: FIXTURES, now: NOW }),
        seedDemoSource(other, { fixturesDir: FIXTURES, now: NOW }),
      ]);
      expect(results.filter((r) => r.seeded)).toHaveLength(1);
      const res = await db.query<{ n: number }>("select count(*)::int as n from inventory.items");
      expect(res.rows[0]!.n).toBe(await csvLineCount("items"));
    } finally {
      if (other !== db) await other.close();
    }
  });
});
