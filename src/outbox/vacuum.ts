import type { Queryable } from "../db/db.js";

/**
 * The outbox tables churn like a queue's: every outcome rewrites a delivery (no HOT update: its
 * status and due time are indexed), so a replay or an outage leaves dead rows whose index entries
 * every due fetch walks until a vacuum (bench `backlog`: the `none` drain at 0.40× the empty table
 * right after 300,000 retries came due). Migration 0011 tells autovacuum to come at 2% dead rows;
 * where it never comes — PGlite, the embedded default, has no autovacuum, and a server may run
 * with it off — the engine vacuums them itself on the same threshold. job_requests (0016) is
 * small, but each request of a rate-limited import job writes a row and prunes an old one.
 */
export const CHURNING = ["deliveries", "delivery_heads", "job_requests"] as const;

export type TableStats = { table: string; dead: number; live: number };

/** Dead rows past 2% of the table (and past 1,000, so a small table is not vacuumed each check). */
export const needsVacuum = (t: TableStats): boolean => t.dead > 1000 + 0.02 * t.live;

/**
 * Whether an autovacuum launcher runs (the setting alone is not enough: PGlite says `on` and has
 * none), and each churning table's dead and live rows.
 */
export async function churnStats(db: Queryable): Promise<{ autovacuum: boolean; tables: TableStats[] }> {
  const { rows } = await db.query<{ autovacuum: boolean; table: string; dead: string; live: string }>(
    `select exists (select 1 from pg_stat_activity where backend_type = 'autovacuum launcher') as autovacuum,
            relname as table, n_dead_tup as dead, n_live_tup as live
     from pg_stat_user_tables where schemaname = 'stock_sync' and relname = any($1::text[])`,
    [CHURNING],
  );
  return {
    autovacuum: rows[0]?.autovacuum === true,
    tables: rows.map((r) => ({ table: r.table, dead: Number(r.dead), live: Number(r.live) })),
  };
}

/**
 * Vacuums (and analyses) the churning tables that need it when autovacuum does not run, and says
 * which. `skip_locked`: a vacuum another process is running already does the work, so this one
 * neither waits for it nor repeats it.
 */
export async function vacuumChurned(db: Queryable): Promise<string[]> {
  const { autovacuum, tables } = await churnStats(db);
  if (autovacuum) return [];
  const due = tables.filter(needsVacuum).map((t) => t.table);
  for (const table of due) await db.query(`vacuum (analyze, skip_locked) stock_sync.${table}`);
  return due;
}
