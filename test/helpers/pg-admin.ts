import { createHash } from "node:crypto";
import pg from "pg";

export const TEST_DATABASE_URL =
  process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** CI=true or REQUIRE_POSTGRES=1: an unreachable PostgreSQL fails the run instead of skipping. */
export const postgresRequired = process.env.CI === "true" || process.env.REQUIRE_POSTGRES === "1";

/** The same server and credentials (of `server`, the tests' by default), another database. */
export function urlFor(database: string, server = TEST_DATABASE_URL): string {
  const u = new URL(server);
  u.pathname = `/${database}`;
  return u.toString();
}

/** A short-lived connection to `server` for create/drop database and the like. */
export async function withAdmin<T>(fn: (c: pg.Client) => Promise<T>, server = TEST_DATABASE_URL): Promise<T> {
  const client = new pg.Client({ connectionString: server, connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

export function templateName(migrationsText: string): string {
  return `stock_sync_tpl_${createHash("sha256").update(migrationsText).digest("hex").slice(0, 12)}`;
}

export const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;
