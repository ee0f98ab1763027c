import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from "vitest";
import { FIXTURES_DIR } from "../../src/app.js";
import { seedDemoSource } from "../../src/inventory/seed.js";
import { runCli } from "../helpers/cli.js";
import { createTestDb, type TestDb } from "../helpers/db.js";
import { quoteIdent, TEST_DATABASE_URL, withAdmin } from "../helpers/pg-admin.js";

/**
 * `source install` on a schema the project has never seen (issue 12.2, 12.3, 12.5): the catalogue
 * is checked before anything is generated, the trigger functions run as their owner (so the
 * retailer's own roles keep writing), and names stay unique for long table names.
 */
const skip = !inject("pgTemplate");

let dir: string;
let t: TestDb & { drop(keep?: boolean): Promise<void> };
const roles: string[] = [];
const droppedRoles: string[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "stock-sync-capture-install-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});
afterEach(async () => {
  if (!t) return;
  for (const role of roles.splice(0)) await t.db.query(`drop owned by ${quoteIdent(role)}`);
  await t.drop();
  await withAdmin(async (c) => {
    for (const role of droppedRoles.splice(0)) await c.query(`drop role if exists ${quoteIdent(role)}`);
  });
});

const SHOP = `
create schema shop;
create table shop.stock_levels (sku text not null, store text not null, qty numeric(12,3) not null, primary key (sku, store));
create table shop.holds (id bigserial primary key, sku text not null, store text not null, qty numeric not null, expires_at timestamptz);`;

const SHOP_TABLES = `
    tables:
      - { table: shop.stock_levels, sku: sku, location: store }
      - { table: shop.holds, sku: sku, location: store }`;

async function shopDb(extra = ""): Promise<string> {
  t = await createTestDb("postgres");
  await t.db.query(SHOP + extra);
  return t.url!;
}

async function install(url: string, tables: string, args: string[] = ["--apply"], capture = "") {
  const path = join(dir, `${randomBytes(4).toString("hex")}.yaml`);
  await writeFile(
    path,
    `database:\n  url: "${url}"\nsource:\n  url: "${url}"\nstock:\n  capture:${capture}${tables}\n`,
  );
  return runCli(["--config", path, "source", "install", ...args]);
}

const captureSchemaExists = async () =>
  (await t.db.query<{ n: string | null }>("select to_regnamespace('stock_sync_capture')::text as n")).rows[0]!
    .n !== null;

const changesFor = async (sku: string) =>
  Number(
    (
      await t.db.query<{ n: string }>("select count(*) as n from stock_sync_capture.changes where sku = $1", [
        sku,
      ])
    ).rows[0]!.n,
  );

describe.skipIf(skip)("source install checks the catalogue first", () => {
  it("a misspelled column: exit 2 naming the table and the column, nothing installed", async () => {
    const url = await shopDb();
    const tables = `
    tables:
      - { table: shop.stock_levels, sku: sku, location: location }`;
    for (const args of [["--apply"], []]) {
      const r = await install(url, tables, args);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("shop.stock_levels");
      expect(r.stderr).toContain('"location"');
      expect(r.stdout).not.toContain("create trigger");
    }
    expect(await captureSchemaExists()).toBe(false);
    // The retailer's writes still work.
    await t.db.query("insert into shop.stock_levels values ('A', 'S1', 1)");
  });

  it("a table that does not exist: exit 2 naming it", async () => {
    const url = await shopDb();
    const r = await install(url, "\n    tables: [{ table: shop.stock_level, sku: sku, location: store }]");
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("shop.stock_level");
    expect(r.stderr).toMatch(/does not exist/);
    expect(await captureSchemaExists()).toBe(false);
  });
});

describe.skipIf(skip)("capture triggers run as their owner", () => {
  it("an application role with no rights on stock_sync_capture keeps writing, and its writes are captured", async () => {
    const url = await shopDb();
    const r = await install(url, SHOP_TABLES);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const role = `ss_app_${randomBytes(4).toString("hex")}`;
    droppedRoles.push(role);
    await withAdmin((c) => c.query(`create role ${role} login`));
    roles.push(role);
    await t.db.query(`grant usage on schema shop to ${role};
      grant select, insert, update, delete, truncate on all tables in schema shop to ${role};
      grant usage on all sequences in schema shop to ${role}`);
    const u = new URL(url);
    u.username = role;
    const app = new pg.Client({ connectionString: u.toString() });
    await app.connect();
    try {
      // A hostile search_path must not redirect the functions' statements.
      await app.query("set search_path = shop, public");
      await app.query("insert into shop.stock_levels values ('APP-1', 'S1', 2.5)");
      await app.query("update shop.stock_levels set qty = 3 where sku = 'APP-1'");
      await app.query("insert into shop.holds (sku, store, qty) values ('APP-2', 'S1', 1)");
      await app.query("delete from shop.holds where sku = 'APP-2'");
      await expect(app.query("select * from stock_sync_capture.changes")).rejects.toThrow(
        /permission denied/,
      );
    } finally {
      await app.end();
    }
    expect(await changesFor("APP-1")).toBe(2);
    expect(await changesFor("APP-2")).toBe(2);
    const { rows } = await t.db.query<{ definer: boolean; config: string[] | null; owner: string }>(
      `select p.prosecdef as definer, p.proconfig as config, pg_get_userbyid(p.proowner) as owner
       from pg_proc p where p.pronamespace = 'stock_sync_capture'::regnamespace`,
    );
    expect(rows.length).toBe(7); // 3 per table, 1 for TRUNCATE
    const installer = new URL(TEST_DATABASE_URL).username || "postgres";
    for (const f of rows) {
      expect(f.definer).toBe(true);
      expect(f.config?.some((c) => c.startsWith("search_path=pg_catalog"))).toBe(true);
      expect(f.owner).toBe(installer);
    }
  });
});

describe.skipIf(skip)("long table names", () => {
  it("two long, similar table names: insert, update, delete and truncate captured on both", async () => {
    const long = "warehouse_stock_levels_for_the_northern_region_";
    const url = await shopDb(`
      create table shop.${long}a (sku text primary key, store text not null, qty int not null);
      create table shop.${long}b (sku text primary key, store text not null, qty int not null);`);
    const tables = `
    tables:
      - { table: shop.${long}a, sku: sku, location: store }
      - { table: shop.${long}b, sku: sku, location: store }`;
    const r = await install(url, tables);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    for (const side of ["a", "b"]) {
      const sku = `LONG-${side}`;
      await t.db.query(`insert into shop.${long}${side} values ($1, 'S1', 1)`, [sku]);
      expect(await changesFor(sku)).toBe(1);
      await t.db.query(`update shop.${long}${side} set qty = 2 where sku = $1`, [sku]);
      expect(await changesFor(sku)).toBe(2);
      await t.db.query(`delete from shop.${long}${side} where sku = $1`, [sku]);
      expect(await changesFor(sku)).toBe(3);
      await t.db.query(`truncate shop.${long}${side}`);
      const truncated = await t.db.query("select 1 from stock_sync_capture.changes where truncated = $1", [
        `shop.${long}${side}`,
      ]);
      expect(truncated.rows).toHaveLength(1);
    }
    const { rows } = await t.db.query<{ table: string; n: string }>(
      `select c.relname as table, count(*) as n from pg_trigger g join pg_class c on c.oid = g.tgrelid
       where not g.tgisinternal and c.relname like $1 group by c.relname order by 1`,
      [`${long}%`],
    );
    expect(rows.map((x) => Number(x.n))).toEqual([4, 4]);
    // Installing again is stable: the same names, replaced, not added.
    expect((await install(url, tables)).code).toBe(0);
    const again = await t.db.query<{ n: string }>(
      `select count(*) as n from pg_trigger g join pg_class c on c.oid = g.tgrelid
       where not g.tgisinternal and c.relname like $1`,
      [`${long}%`],
    );
    expect(Number(again.rows[0]!.n)).toBe(8);
  });
});

describe.skipIf(skip)("replication", () => {
  it("enable_always: writes under session_replication_role = replica are captured", async () => {
    const url = await shopDb();
    const r = await install(url, SHOP_TABLES, ["--apply"], "\n    enable_always: true");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    await t.db.tx(async (tx) => {
      await tx.query("set local session_replication_role = replica");
      await tx.query("insert into shop.stock_levels values ('REP-1', 'S1', 1)");
    });
    expect(await changesFor("REP-1")).toBe(1);
  });

  it("a logical-replication subscriber: trigger mode refused, pointing to full_diff", async () => {
    const url = await shopDb();
    const sub = `ss_sub_${randomBytes(4).toString("hex")}`;
    await t.db.query(
      `create subscription ${sub} connection 'host=127.0.0.1 dbname=none' publication p
       with (connect = false, enabled = false, create_slot = false, slot_name = none)`,
    );
    try {
      const r = await install(url, SHOP_TABLES);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("subscriber");
      expect(r.stderr).toContain("full_diff");
      expect(await captureSchemaExists()).toBe(false);
    } finally {
      await t.db.query(`drop subscription ${sub}`);
    }
  });
});

describe.skipIf(skip)("the CLI says why a delta compared every key", () => {
  it("after a TRUNCATE, `delta` prints the reason", { timeout: 120_000 }, async () => {
    t = await createTestDb("postgres");
    await seedDemoSource(t.db, { fixturesDir: FIXTURES_DIR });
    const path = join(dir, "truncate.yaml");
    await writeFile(path, `database:\n  url: "${t.url}"\nsource:\n  url: "${t.url}"\n`);
    expect((await runCli(["--config", path, "source", "install", "--apply"])).code).toBe(0);
    expect((await runCli(["--config", path, "snapshot"])).code).toBe(0);
    await t.db.query("truncate inventory.reservations");
    const r = await runCli(["--config", path, "delta"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("compared every key: TRUNCATE of inventory.reservations");
  });
});
