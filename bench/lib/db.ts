import type pg from "pg";
import type { Db } from "../../src/db/db.js";
import { migrate } from "../../src/db/migrate.js";
import { openPostgres } from "../../src/db/pg.js";
import { quoteIdent, urlFor as urlOn, withAdmin as withAdminOn } from "../../test/helpers/pg-admin.js";

export const BENCH_DATABASE_URL =
  process.env.BENCH_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

export type BenchDb = { name: string; url: string; db: Db; drop(): Promise<void> };

/** The benchmark server, another database. */
export const urlFor = (database: string) => urlOn(database, BENCH_DATABASE_URL);

export const withAdmin = <T>(fn: (c: pg.Client) => Promise<T>) => withAdminOn(fn, BENCH_DATABASE_URL);

/** A fresh database `bench_<name>_<pid>`, migrated with the product's own migrations. */
export async function createBenchDb(name: string, poolSize = 10): Promise<BenchDb> {
  const database = `bench_${name}_${process.pid}`;
  await withAdmin(async (c) => {
    await c.query(`drop database if exists ${quoteIdent(database)} with (force)`);
    await c.query(`create database ${quoteIdent(database)}`);
  });
  const url = urlFor(database);
  const db = openPostgres(url, { poolSize });
  await migrate(db);
  return {
    name: database,
    url,
    db,
    async drop() {
      await db.close().catch(() => undefined);
      await withAdmin((c) => c.query(`drop database if exists ${quoteIdent(database)} with (force)`));
    },
  };
}

/**
 * Drops `bench_*_<pid>` databases left by a benchmark process that no longer runs (killed, or
 * interrupted with Ctrl-C), so reruns do not pile up gigabytes of test tables.
 */
export async function dropStaleBenchDbs(): Promise<string[]> {
  return withAdmin(async (c) => {
    const { rows } = await c.query<{ datname: string }>(
      "select datname from pg_database where datname ~ '^bench_[a-z0-9_]+_[0-9]+$'",
    );
    const stale = rows.map((r) => r.datname).filter((n) => !isRunning(Number(n.split("_").at(-1))));
    for (const n of stale) await c.query(`drop database if exists ${quoteIdent(n)} with (force)`);
    return stale;
  });
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Server facts for the report. */
export async function serverInfo(): Promise<{ version: string; synchronousCommit: string; fsync: string }> {
  return withAdmin(async (c) => {
    const { rows } = await c.query<{ v: string; sc: string; f: string }>(
      "select current_setting('server_version') as v, current_setting('synchronous_commit') as sc, current_setting('fsync') as f",
    );
    return { version: rows[0]!.v, synchronousCommit: rows[0]!.sc, fsync: rows[0]!.f };
  });
}
