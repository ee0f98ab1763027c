import { readdir, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import type { TestProject } from "vitest/node";
import { loadMigrations, migrate } from "../../src/db/migrate.js";
import { openPostgres } from "../../src/db/pg.js";
import { pgliteDb } from "../../src/db/pglite.js";
import { SessionLock } from "../../src/db/session-lock.js";
import {
  postgresRequired,
  quoteIdent,
  TEST_DATABASE_URL,
  templateName,
  urlFor,
  withAdmin,
} from "./pg-admin.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** A migrated template database to clone per test file, or null with the reason in pgSkipReason. */
    pgTemplate: string | null;
    pgSkipReason: string;
    /** A migrated PGlite data directory (a tar file) to load per test database. */
    pgliteTemplate: string;
    /** The same, as an embedded data directory's `pgdata` (copied by `migratedDataDir`). */
    pgliteDataDirTemplate: string;
  }
}

/** Migrates a template database once per run (named by the migrations' hash, so reruns reuse it). */
export default async function setup(project: TestProject) {
  const where = new URL(TEST_DATABASE_URL).host;
  const migrations = await loadMigrations();
  const name = templateName(migrations.map((m) => m.name + m.sql).join("\n"));
  const pgliteTemplate = await ensurePgliteTemplate(name);
  project.provide("pgliteTemplate", pgliteTemplate);
  project.provide("pgliteDataDirTemplate", await ensurePgdataTemplate(pgliteTemplate));
  try {
    await ensureTemplate(name);
    project.provide("pgTemplate", name);
    project.provide("pgSkipReason", "");
  } catch (err) {
    const reason = `PostgreSQL unreachable at ${where}: ${(err as Error).message}`;
    if (postgresRequired)
      throw new Error(`${reason} (CI=true or REQUIRE_POSTGRES=1: real-PostgreSQL tests must run)`);
    console.warn(`\n!! real-PostgreSQL tests will be SKIPPED: ${reason}\n`);
    project.provide("pgTemplate", null);
    project.provide("pgSkipReason", reason);
  }
}

async function ensureTemplate(name: string): Promise<void> {
  const exists = await withAdmin(
    async (c) => (await c.query("select 1 from pg_database where datname = $1", [name])).rowCount === 1,
  );
  if (exists) return;
  // Build under a temporary name and rename, so a half-built template is never cloned.
  const tmp = `${name}_build_${process.pid}`;
  await withAdmin((c) => c.query(`create database ${quoteIdent(tmp)}`));
  const db = openPostgres(urlFor(tmp), { poolSize: 1 });
  try {
    await migrate(db);
  } finally {
    await db.close();
  }
  await withAdmin(async (c) => {
    try {
      await c.query(`alter database ${quoteIdent(tmp)} rename to ${quoteIdent(name)}`);
    } catch {
      await c.query(`drop database if exists ${quoteIdent(tmp)}`); // another run built it first
    }
  });
}

/**
 * The same for PGlite: a migrated data directory, dumped once and loaded by each test database.
 * Loading it takes a quarter to a half of creating a database and migrating it, which every
 * test file with a PGlite back end did. Named like the PostgreSQL template; others go when unused for a day.
 */
async function ensurePgliteTemplate(name: string): Promise<string> {
  const file = join(tmpdir(), `${name}.pglite.tar`);
  // marked as used now: another checkout's run (other migrations) removes only those unused for a day
  const exists = await utimes(file, new Date(), new Date()).then(
    () => true,
    () => false,
  );
  if (!exists) {
    const pg = await PGlite.create();
    const db = pgliteDb(pg, new SessionLock(), () => pg.close());
    try {
      await migrate(db);
      const dump = await pg.dumpDataDir("none");
      const tmp = `${file}.${process.pid}`;
      await writeFile(tmp, Buffer.from(await dump.arrayBuffer()));
      await rename(tmp, file); // never half-written under the final name
    } finally {
      await db.close();
    }
  }
  // Not at once: a running file's next test database found its template gone (ENOENT, two
  // worktrees with different migrations run at the same time).
  await removeDayOld((f) => f.endsWith(".pglite.tar"), file);
  return file;
}

/** Templates (`stock_sync_tpl_*` in tmpdir) that `which` names, but `keep`, unchanged for a day. */
async function removeDayOld(which: (name: string) => boolean, keep: string): Promise<void> {
  const dayAgo = Date.now() - 24 * 3600_000;
  for (const f of await readdir(tmpdir())) {
    const path = join(tmpdir(), f);
    if (!f.startsWith("stock_sync_tpl_") || !which(f) || path === keep) continue;
    const made = await stat(path).then(
      (st) => st.mtimeMs,
      () => Date.now(), // removed meanwhile by another run
    );
    if (made < dayAgo) await rm(path, { recursive: true, force: true });
  }
}

/**
 * The migrated PGlite template unpacked as an on-disk data directory, the `pgdata` an embedded
 * `stock-sync` keeps under `database.data_dir`. A first start in an empty data_dir spends 4-11 s
 * creating its database (initdb, in WebAssembly); a copy of this takes well under a second.
 * Made from the tar beside it (so named by the same hash); older ones go after a day (another
 * checkout's run may still be copying one).
 */
async function ensurePgdataTemplate(tar: string): Promise<string> {
  const dir = tar.replace(/\.tar$/, ".pgdata");
  const exists = await stat(dir).then(
    () => true,
    () => false,
  );
  if (!exists) {
    const tmp = `${dir}.${process.pid}`;
    const pg = await PGlite.create({ dataDir: tmp, loadDataDir: new Blob([await readFile(tar)]) });
    await pg.close();
    try {
      await rename(tmp, dir); // never half-written under the final name
    } catch {
      await rm(tmp, { recursive: true, force: true }); // another run made it first
    }
  }
  await removeDayOld((f) => f.includes(".pgdata"), dir);
  return dir;
}
