import { type Queryable, quoteIdent } from "../db/db.js";
import { ConnectorError } from "../errors.js";
import { keyOf } from "./diff.js";

/** The stock export's rows in the state database (migration 0003). */

export type Watermark = { source_snapshot: string; read_at: Date; run_id: number };
export type RunKind = "full" | "delta";
export type RunStatus = "running" | "enqueued" | "empty" | "refused" | "failed" | "dry-run";

export async function readWatermark(db: Queryable): Promise<Watermark | null> {
  const { rows } = await db.query<Watermark>(
    "select source_snapshot, read_at, run_id from stock_sync.stock_watermark",
  );
  return rows[0] ?? null;
}

/**
 * Moves the watermark to this snapshot, only forward: a snapshot whose xmax is below the
 * current one's is older, and a run that read it must not commit (it throws, so its state
 * transaction rolls back). The stock lock's fence keeps stale runs out; this is the last check.
 */
export async function writeWatermark(db: Queryable, snapshot: string, readAt: Date, runId: number) {
  const { rowCount } = await db.query(
    `insert into stock_sync.stock_watermark (source_snapshot, read_at, run_id) values ($1, $2, $3)
     on conflict (id) do update set source_snapshot = $1, read_at = $2, run_id = $3
     where pg_snapshot_xmax(stock_sync.stock_watermark.source_snapshot::pg_snapshot) <= pg_snapshot_xmax($1::pg_snapshot)`,
    [snapshot, readAt, runId],
  );
  if (rowCount === 1) return;
  const current = await readWatermark(db);
  throw new ConnectorError(
    "NOT_AVAILABLE",
    `the stock watermark would move backwards (snapshot ${snapshot} is older than ${current?.source_snapshot} of run ${current?.run_id}): a stale run is not committed`,
  );
}

export async function startRun(
  db: Queryable,
  kind: RunKind,
  trigger: string,
  snapshotId: string,
  now: Date,
): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    `insert into stock_sync.stock_runs (kind, trigger, snapshot_id, status, started_at)
     values ($1, $2, $3, 'running', $4) returning id`,
    [kind, trigger, snapshotId, now],
  );
  return rows[0]!.id;
}

export const finishRun = (
  db: Queryable,
  id: number,
  r: {
    status: RunStatus;
    now: Date;
    rows?: number;
    parts?: number;
    sourceSnapshot?: string;
    detail?: string;
  },
) =>
  db.query(
    `update stock_sync.stock_runs set status = $2, finished_at = $3, rows = $4, parts = $5, source_snapshot = $6, detail = $7
     where id = $1`,
    [id, r.status, r.now, r.rows ?? null, r.parts ?? null, r.sourceSnapshot ?? null, r.detail ?? null],
  );

/** Row count of the newest full whose every delivery was delivered: the guard's reference. */
export async function lastDeliveredFullRows(db: Queryable): Promise<number | null> {
  const { rows } = await db.query<{ rows: number }>(
    `select r.rows from stock_sync.stock_runs r
     where r.kind = 'full' and r.status = 'enqueued'
       and exists (select 1 from stock_sync.messages m where m.run_id = r.id)
       and not exists (select 1 from stock_sync.messages m join stock_sync.deliveries d on d.message_id = m.id
                       where m.run_id = r.id and d.status <> 'delivered')
     order by r.id desc limit 1`,
  );
  return rows[0]?.rows ?? null;
}

/** Whether a full that started at or after `since` was enqueued (a due full already sent). */
export async function fullSentSince(db: Queryable, since: Date): Promise<boolean> {
  const { rows } = await db.query(
    "select 1 from stock_sync.stock_runs where kind = 'full' and status = 'enqueued' and started_at >= $1 limit 1",
    [since],
  );
  return rows.length > 0;
}

/**
 * Of these subscriptions, those no full was ever enqueued for: a delta to them would be applied
 * with no baseline, so their first stock message must be a full.
 */
export async function withoutFull(db: Queryable, subscriptions: readonly string[]): Promise<string[]> {
  if (!subscriptions.length) return [];
  const { rows } = await db.query<{ name: string }>(
    `select s.name from unnest($1::text[]) as s(name)
     where not exists (select 1 from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
                       where d.subscription = s.name and m.subject = 'stock.full')
     order by s.name`,
    [subscriptions],
  );
  return rows.map((r) => r.name);
}

/** When the newest full was enqueued (for "run one at start if older than its period"). */
export async function lastFullAt(db: Queryable): Promise<Date | null> {
  const { rows } = await db.query<{ at: Date }>(
    "select finished_at as at from stock_sync.stock_runs where kind = 'full' and status = 'enqueued' order by id desc limit 1",
  );
  return rows[0]?.at ?? null;
}

/**
 * Undelivered older stock messages of these subscriptions will never be sent: a newer full
 * replaces them. Dead ones too, so a later replay or resume cannot put them back.
 */
export async function supersedeStock(db: Queryable, subscriptions: string[], now: Date): Promise<number> {
  const { rowCount } = await db.query(
    `update stock_sync.deliveries d set status = 'superseded', updated_at = $2
     from stock_sync.messages m
     where m.id = d.message_id and m.run_id is not null and d.subscription = any($1::text[])
       and d.status in ('pending', 'failed', 'dead')`,
    [subscriptions, now],
  );
  return rowCount;
}

const sentRows = async (db: Queryable, where: string, values: unknown[]) =>
  new Map(
    (
      await db.query<{ sku: string; location: string; quantity: number }>(
        `select s.sku, s.location, s.quantity from stock_sync.stock_sent s ${where}`,
        values,
      )
    ).rows.map((r) => [keyOf(r.sku, r.location), Number(r.quantity)]),
  );

export const sentForKeys = (db: Queryable, skus: string[], locations: string[]) =>
  sentRows(db, "join unnest($1::text[], $2::text[]) as k(sku, location) using (sku, location)", [
    skus,
    locations,
  ]);

export const sentMatching = (db: Queryable, skus: string[], locations: string[]) =>
  sentRows(db, "where s.sku = any($1::text[]) or s.location = any($2::text[])", [skus, locations]);

export const allSent = (db: Queryable) => sentRows(db, "", []);

const BATCH = 5000;

/** Records what this run said about each key. */
export async function upsertSent(
  db: Queryable,
  rows: readonly { sku: string; location: string; quantity: number }[],
  runId: number,
) {
  for (let i = 0; i < rows.length; i += BATCH) {
    const batch = rows.slice(i, i + BATCH);
    await db.query(
      `insert into stock_sync.stock_sent (sku, location, quantity, run_id)
       select sku, location, quantity, $4 from unnest($1::text[], $2::text[], $3::int8[]) as t(sku, location, quantity)
       on conflict (sku, location) do update set quantity = excluded.quantity, run_id = excluded.run_id`,
      [batch.map((r) => r.sku), batch.map((r) => r.location), batch.map((r) => r.quantity), runId],
    );
  }
}

/**
 * In this transaction, values too large to sit in their row (a full's parts, ~1 MB each) are
 * compressed with lz4 instead of pglz when the server was built with it: pglz took ~0.7 s of a
 * 1M-key full's enqueue, lz4 a fraction of that (and reads back faster for delivery). A session
 * setting, so the outbox's schema is unchanged; PGlite and servers without lz4 keep pglz.
 */
export async function fastToast(db: Queryable): Promise<void> {
  const { rows } = await db.query<{ lz4: boolean }>(
    "select 'lz4' = any(enumvals) as lz4 from pg_settings where name = 'default_toast_compression'",
  );
  if (rows[0]?.lz4) await db.query("set local default_toast_compression = 'lz4'");
}

export const FULL_ROWS = "stock_full_rows";

/** Where a full's rows wait, as text, for `diffSent`; one column per CSV column, gone at commit. */
export const createFullRows = (db: Queryable, columns: readonly string[]) =>
  db.query(
    `create temp table ${FULL_ROWS} (${columns.map((c) => `${quoteIdent(c)} text`).join(", ")}) on commit drop`,
  );

/**
 * What a full (its rows in stock_full_rows) changes in the sent state, in stock_sent_diff: one
 * full join finds the keys that differ (hourly, few do). Resolves to the number of keys it takes
 * from a positive quantity to 0 or removes (the shrink guard's measure).
 */
export async function diffSent(db: Queryable): Promise<number> {
  // No `analyze` of stock_full_rows (0.25-0.4 s per 1M rows): a full join is a hash or a merge
  // join whatever the statistics, and the size the planner reads from the table's pages is
  // enough to hash the sent state and probe it with the full's rows.
  await db.query(`create temp table stock_sent_diff on commit drop as
    select coalesce(f.sku, s.sku) as sku, coalesce(f.location, s.location) as location,
           f.quantity::int8 as quantity, s.sku is not null as known, s.quantity as before
    from ${FULL_ROWS} f full join stock_sync.stock_sent s on s.sku = f.sku and s.location = f.location
    where s.quantity is distinct from f.quantity::int8`);
  await db.query("analyze stock_sent_diff");
  const { rows } = await db.query<{ n: number }>(
    "select count(*)::int as n from stock_sent_diff where before > 0 and coalesce(quantity, 0) = 0",
  );
  return rows[0]!.n;
}

/**
 * Makes the sent state what a full said, from stock_sent_diff (`diffSent`): gone keys are
 * deleted, changed quantities updated and new keys inserted. Three joins of 1M rows each took
 * twice as long as the one. A key whose quantity is unchanged keeps the run_id of the run that
 * sent that value.
 */
export async function applySent(db: Queryable, runId: number): Promise<void> {
  await db.query(`delete from stock_sync.stock_sent s using stock_sent_diff d
    where d.quantity is null and s.sku = d.sku and s.location = d.location`);
  await db.query(
    `update stock_sync.stock_sent s set quantity = d.quantity, run_id = $1 from stock_sent_diff d
     where d.known and d.quantity is not null and s.sku = d.sku and s.location = d.location`,
    [runId],
  );
  await db.query(
    `insert into stock_sync.stock_sent (sku, location, quantity, run_id)
     select sku, location, quantity, $1 from stock_sent_diff where not known`,
    [runId],
  );
}

/** The source the watermark was read on (sourceIdentity); null before migration 0009 or any run. */
export async function readSourceIdentity(db: Queryable): Promise<string | null> {
  const { rows } = await db.query<{ id: string | null }>(
    "select source_identity as id from stock_sync.stock_watermark",
  );
  return rows[0]?.id ?? null;
}

/** Beside writeWatermark, in the same transaction. */
export const writeSourceIdentity = (db: Queryable, identity: string) =>
  db.query("update stock_sync.stock_watermark set source_identity = $1", [identity]);

const PAGE = 5000;

type SentKey = { sku: string; location: string; positive: boolean };

/**
 * Every sent key with a non-zero quantity, in pages (keyset on the primary key): never all in
 * memory. `positive`: sent above 0 (the shrink guard counts those a delta zeroes).
 */
export async function* nonZeroSentPages(db: Queryable): AsyncIterable<SentKey[]> {
  let after: SentKey | null = null;
  const select = "select sku, location, quantity > 0 as positive from stock_sync.stock_sent";
  for (;;) {
    const page: { rows: SentKey[] } = after
      ? await db.query(
          `${select} where quantity <> 0 and (sku, location) > ($1, $2)
           order by sku, location limit ${PAGE}`,
          [after.sku, after.location],
        )
      : await db.query(`${select} where quantity <> 0 order by sku, location limit ${PAGE}`);
    const { rows } = page;
    if (rows.length) yield rows;
    if (rows.length < PAGE) return;
    after = rows[rows.length - 1]!;
  }
}

export async function countNonZeroSent(db: Queryable): Promise<number> {
  const { rows } = await db.query<{ n: string }>(
    "select count(*) as n from stock_sync.stock_sent where quantity <> 0",
  );
  return Number(rows[0]!.n);
}
