import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { PGlite } from "@electric-sql/pglite";
import { afterAll, afterEach, beforeAll, describe, inject } from "vitest";
import type { Db } from "../../src/db/db.js";
import { migrate } from "../../src/db/migrate.js";
import { openPostgres } from "../../src/db/pg.js";
import { pgliteDb } from "../../src/db/pglite.js";
import { SessionLock } from "../../src/db/session-lock.js";
import { quoteIdent, urlFor, withAdmin } from "./pg-admin.js";

export type Backend = "postgres" | "pglite";

export type TestDb = {
  backend: Backend;
  db: Db;
  /** Connection URL for other processes; null for the in-process PGlite. */
  url: string | null;
};

/** A fresh, migrated database of the given back end; `drop` removes it (postgres) or closes it. */
export async function createTestDb(
  backend: Backend,
): Promise<TestDb & { drop(keep?: boolean): Promise<void> }> {
  if (backend === "pglite") {
    // the migrated template of global-setup, or (a run without it) a new database migrated here
    const template = inject("pgliteTemplate");
    const pg = template
      ? await PGlite.create({ loadDataDir: new Blob([await readFile(template)]) })
      : await PGlite.create();
    const db = pgliteDb(pg, new SessionLock(), () => pg.close());
    await migrate(db); // a no-op on the template
    return { backend, db, url: null, drop: () => db.close() };
  }
  const template = inject("pgTemplate");
  if (!template) throw new Error(inject("pgSkipReason"));
  const name = `t_${randomBytes(5).toString("hex")}`;
  await withAdmin((c) => c.query(`create database ${quoteIdent(name)} template ${quoteIdent(template)}`));
  const url = urlFor(name);
  const db = openPostgres(url, { poolSize: 5 });
  return {
    backend,
    db,
    url,
    async drop(keep = false) {
      await db.close();
      // A failing test's database is kept for a post-mortem; its name is in the log.
      if (keep) console.warn(`kept database ${name} of a failed test`);
      else await withAdmin((c) => c.query(`drop database if exists ${quoteIdent(name)} with (force)`));
    },
  };
}

/**
 * The back ends `describeEachDb` runs on: both, or those named in TEST_BACKENDS (comma-separated,
 * e.g. `TEST_BACKENDS=pglite` for a mutation run, docs/testing.md), never silently none.
 */
const BACKENDS: readonly Backend[] = (() => {
  const all: Backend[] = ["postgres", "pglite"];
  const named = process.env.TEST_BACKENDS?.split(",")
    .map((b) => b.trim())
    .filter(Boolean);
  if (!named?.length) return all;
  const unknown = named.filter((b) => !all.includes(b as Backend));
  if (unknown.length)
    throw new Error(`TEST_BACKENDS: unknown back end ${unknown.join(", ")} (postgres, pglite)`);
  return all.filter((b) => named.includes(b));
})();

/**
 * The same tests against both back ends: `describeEachDb("outbox", (t) => { it(..., () => t().db) })`.
 * `backend` is known while the tests are declared (`backend === "pglite" ? it.fails : it` for a
 * defect of one back end only).
 * Real PostgreSQL is skipped, with the reason in the suite's name, only where it is unreachable
 * and not required (global-setup fails the run when CI=true).
 */
export function describeEachDb(title: string, body: (current: () => TestDb, backend: Backend) => void): void {
  for (const backend of BACKENDS) {
    const skip = backend === "postgres" && !inject("pgTemplate");
    const name = skip ? `${title} [postgres] (SKIPPED: ${inject("pgSkipReason")})` : `${title} [${backend}]`;
    (skip ? describe.skip : describe)(name, () => {
      let current: Awaited<ReturnType<typeof createTestDb>> | undefined;
      let failed = false;
      beforeAll(async () => {
        current = await createTestDb(backend);
      });
      afterEach((ctx) => {
        if (ctx.task.result?.state === "fail") failed = true;
      });
      afterAll(async () => {
        await current?.drop(failed);
      });
      body(() => {
        if (!current) throw new Error("test database not ready");
        return current;
      }, backend);
    });
  }
}
