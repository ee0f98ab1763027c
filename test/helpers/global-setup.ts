import type { TestProject } from "vitest/node";
import { loadMigrations, migrate } from "../../src/db/migrate.js";
import { openPostgres } from "../../src/db/pg.js";
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
  }
}

/** Migrates a template database once per run (named by the migrations' hash, so reruns reuse it). */
export default async function setup(project: TestProject) {
  const where = new URL(TEST_DATABASE_URL).host;
  try {
    const migrations = await loadMigrations();
    const name = templateName(migrations.map((m) => m.name + m.sql).join("\n"));
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
