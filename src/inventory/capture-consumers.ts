import type { Queryable } from "../db/db.js";

/**
 * The readers of the capture table (stock.capture.consumer): several deployments (staging,
 * blue/green, a second OMS) can read one source. Each has a position (the xmin of the snapshot
 * its last run committed) and the install generation it last read under; rows are pruned below
 * the slowest consumer seen within STALE. A consumer with no row, or whose generation is not the
 * install's, compares every key at its next delta: capture was (re)installed since, or rows it
 * needed may have been pruned while it was away.
 */
const STALE = "7 days";

/** Before a run's read: a new consumer holds rows from now on (so nobody prunes what its next run needs). */
export const registerConsumer = (db: Queryable, name: string) =>
  db.query(
    `insert into stock_sync_capture.consumers (name, position)
     values ($1, pg_snapshot_xmin(pg_current_snapshot())) on conflict (name) do nothing`,
    [name],
  );

export type CaptureState = { generation: number | null; consumerGeneration: number | null };

/** The install's generation and this consumer's, as the run's snapshot sees them. */
export async function readCaptureState(tx: Queryable, name: string): Promise<CaptureState> {
  const { rows } = await tx.query<{ generation: string | null; consumer: string | null }>(
    `select (select generation from stock_sync_capture.install) as generation,
            (select generation from stock_sync_capture.consumers where name = $1) as consumer`,
    [name],
  );
  const g = (v: string | null | undefined) => (v === null || v === undefined ? null : Number(v));
  return { generation: g(rows[0]?.generation), consumerGeneration: g(rows[0]?.consumer) };
}

/**
 * After the run's state committed: this consumer's position moves to the snapshot it read, with
 * the generation it read under; stale consumers lose their baseline; rows below the slowest go.
 */
export async function advanceAndPrune(
  db: Queryable,
  name: string,
  snapshot: string,
  generation: number | null,
) {
  await db.query(
    `insert into stock_sync_capture.consumers (name, position, generation, updated_at)
     values ($1, pg_snapshot_xmin($2::pg_snapshot), $3, now())
     on conflict (name) do update set position = excluded.position, generation = excluded.generation,
       updated_at = excluded.updated_at`,
    [name, snapshot, generation],
  );
  await pruneChanges(db);
}

/**
 * Stale consumers lose their baseline, and change rows below the slowest fresh consumer go; with
 * no fresh consumer, every row older than the oldest running transaction (a consumer that
 * registers later compares every key at its first delta, so it needs none of them).
 */
export async function pruneChanges(db: Queryable) {
  await db.query(
    `update stock_sync_capture.consumers set generation = null
     where updated_at < now() - interval '${STALE}' and generation is not null`,
  );
  await db.query(
    `delete from stock_sync_capture.changes
     where xid < coalesce((select min(position) from stock_sync_capture.consumers
                           where updated_at >= now() - interval '${STALE}'),
                          pg_snapshot_xmin(pg_current_snapshot()))`,
  );
}

export type ChangedKeys = {
  exact: { sku: string; location: string }[];
  skus: string[];
  locations: string[];
  /** Tables truncated since: every key must be compared. */
  truncated: string[];
};

/** Keys written by transactions that the previous snapshot could not see (and ours can). */
export async function changedSince(tx: Queryable, previous: string): Promise<ChangedKeys> {
  const { rows } = await tx.query<{ sku: string | null; location: string | null; truncated: string | null }>(
    `select distinct sku, location, truncated from stock_sync_capture.changes
     where xid >= pg_snapshot_xmin($1::pg_snapshot) and not pg_visible_in_snapshot(xid, $1::pg_snapshot)`,
    [previous],
  );
  const out: ChangedKeys = { exact: [], skus: [], locations: [], truncated: [] };
  for (const r of rows) {
    if (r.truncated !== null) out.truncated.push(r.truncated);
    else if (r.sku !== null && r.location !== null) out.exact.push({ sku: r.sku, location: r.location });
    else if (r.sku !== null) out.skus.push(r.sku);
    else if (r.location !== null) out.locations.push(r.location);
  }
  return out;
}

/**
 * Which database this is: a re-pointed or restored source has another identity (system
 * identifier of the cluster, oid and name of the database), and its transaction ids mean nothing
 * against a watermark taken elsewhere.
 */
export async function sourceIdentity(tx: Queryable): Promise<string> {
  const { rows } = await tx.query<{ id: string }>(
    `select s.system_identifier::text || '/' || d.oid::text || '/' || d.datname as id
     from pg_control_system() s, pg_catalog.pg_database d where d.datname = current_database()`,
  );
  return rows[0]!.id;
}

/** Whether the source's transaction ids went backwards since `previous` (a restore from a backup). */
export async function xidsWentBack(tx: Queryable, previous: string): Promise<boolean> {
  const { rows } = await tx.query<{ back: boolean }>(
    "select pg_snapshot_xmin(pg_current_snapshot()) < pg_snapshot_xmin($1::pg_snapshot) as back",
    [previous],
  );
  return rows[0]!.back;
}
