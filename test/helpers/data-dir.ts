import { cp, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { inject } from "vitest";

/**
 * Makes `dataDir` (0700, as `database.data_dir` must be) hold an embedded database that is already
 * created and migrated: a copy of global-setup's template. For tests whose claim is not about
 * creating the embedded database (a kill -9, a restart, a read-only command): a first start in an
 * empty data_dir spends 4-11 s in PGlite's initdb, per process that creates one.
 */
export async function migratedDataDir(dataDir: string): Promise<string> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await cp(inject("pgliteDataDirTemplate"), join(dataDir, "pgdata"), { recursive: true });
  return dataDir;
}
