import type { Db } from "./db.js";
import { openEmbedded } from "./embedded.js";
import { openPostgres } from "./pg.js";

export type DatabaseSettings = { url: string; data_dir: string; pool_size: number };

/** The state database: PostgreSQL when a URL is configured, else the embedded PGlite under data_dir. */
export async function openStateDb(
  settings: DatabaseSettings,
  onIdleError?: (err: Error) => void,
): Promise<Db> {
  if (settings.url) return openPostgres(settings.url, { poolSize: settings.pool_size, onIdleError });
  return openEmbedded(settings.data_dir);
}
