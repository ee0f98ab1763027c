import type { Db } from "./db.js";
import { openPostgres } from "./pg.js";

export type DatabaseSettings = { url: string; data_dir: string; pool_size: number };

/** The state database: PostgreSQL when a URL is configured, else the embedded PGlite under data_dir. */
export async function openStateDb(
  settings: DatabaseSettings,
  onIdleError?: (err: Error) => void,
): Promise<Db> {
  if (settings.url) return openPostgres(settings.url, { poolSize: settings.pool_size, onIdleError });
  // PGlite is loaded only when used: a server-backed process never pays for it.
  const { openEmbedded } = await import("./embedded.js");
  return openEmbedded(settings.data_dir);
}
