import { readdir, readFile } from "node:fs/promises";
import { fromRoot } from "../root.js";
import type { Db, Queryable } from "./db.js";

// From the package root, not this module: bundled into dist/, this code is no longer in src/db/.
export const MIGRATIONS_DIR = fromRoot("src/db/migrations/");

// Any constant works; it only has to be the same in every stock-sync process.
const MIGRATION_LOCK = 0x5354_4f43; // "STOC"

export type Migration = { id: number; name: string; sql: string };

const loaded = new Map<string, Promise<Migration[]>>();

/** The shipped migrations, read once per process (they never change while it runs). */
export function loadMigrations(dir = MIGRATIONS_DIR): Promise<Migration[]> {
  let migrations = loaded.get(dir);
  if (!migrations) {
    migrations = readMigrations(dir);
    loaded.set(dir, migrations);
  }
  return migrations;
}

async function readMigrations(dir: string): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort();
  return Promise.all(
    files.map(async (name) => ({
      id: Number(name.slice(0, 4)),
      name,
      sql: await readFile(`${dir}/${name}`, "utf8"),
    })),
  );
}

/**
 * Applies pending migrations in one transaction. The advisory lock makes a concurrent migrator
 * (a second `stock-sync start`) wait, then find nothing left to do.
 */
export async function migrate(db: Db, dir = MIGRATIONS_DIR): Promise<{ applied: string[]; latest: number }> {
  const migrations = await loadMigrations(dir);
  return db.tx(async (tx) => {
    await tx.query("select pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
    await tx.query(`create schema if not exists stock_sync;
      create table if not exists stock_sync.migrations (
        id int primary key, name text not null, applied_at timestamptz not null default now())`);
    const done = new Set((await appliedIds(tx)).map((r) => r.id));
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.id)) continue;
      // Record the id first so a migrator that got past the lock some other way fails fast.
      await tx.query("insert into stock_sync.migrations (id, name) values ($1, $2)", [m.id, m.name]);
      await tx.query(m.sql);
      applied.push(m.name);
    }
    return { applied, latest: migrations.at(-1)?.id ?? 0 };
  });
}

const appliedIds = async (db: Queryable) =>
  (await db.query<{ id: number }>("select id from stock_sync.migrations order by id")).rows;

/** For /readyz: every shipped migration is applied. */
export async function migrationsPending(db: Queryable, dir = MIGRATIONS_DIR): Promise<number> {
  const shipped = await loadMigrations(dir);
  const exists = await db.query<{ t: string | null }>(
    "select to_regclass('stock_sync.migrations')::text as t",
  );
  if (!exists.rows[0]?.t) return shipped.length;
  const done = new Set((await appliedIds(db)).map((r) => r.id));
  return shipped.filter((m) => !done.has(m.id)).length;
}
