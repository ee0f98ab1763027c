import type { Queryable } from "../db/db.js";

/** How far one subscription got with a run's parts (its deliveries, by status). */
export type RunDelivery = {
  subscription: string;
  parts: number;
  delivered: number;
  pending: number;
  failed: number;
  dead: number;
  superseded: number;
  /** Records the OMS rejected in this run's finished import jobs (issue 15; 0 without a job). */
  rejected: number;
  /** The first few of them ("sku@location: reason"), for people. */
  rejected_first: string[];
};

/** Rejected records listed per run and subscription on /status and by `stock-sync status`. */
const REJECTED_SHOWN = 3;

export type StockRunView = {
  id: number;
  kind: "full" | "delta";
  trigger: string;
  status: string;
  started_at: Date;
  finished_at: Date | null;
  rows: number | null;
  parts: number | null;
  duration_ms: number | null;
  detail: string | null;
  /** Per stock subscription: parts delivered of parts (empty when the run enqueued nothing). */
  delivery: RunDelivery[];
};

export type StockStatus = {
  last_full: StockRunView | null;
  last_delta: StockRunView | null;
  /** The newest delta that found changes (an empty one says nothing happened). */
  last_delta_sent: StockRunView | null;
  next_full: Date | null;
  next_delta: Date | null;
  /**
   * The last successful full started longer ago than its period plus a margin (or, with none
   * yet, the first stock run did); null when the caller did not say what is overdue.
   */
  full_overdue: boolean | null;
  /** When the last successful (enqueued) full started. */
  last_successful_full_at: Date | null;
};

const RUN = `select id, kind, trigger, status, started_at, finished_at, rows, parts, detail,
  (extract(epoch from finished_at - started_at) * 1000)::int as duration_ms from stock_sync.stock_runs`;

async function latest(db: Queryable, where: string): Promise<Omit<StockRunView, "delivery"> | null> {
  const { rows } = await db.query<Omit<StockRunView, "delivery">>(
    `${RUN} where ${where} order by id desc limit 1`,
  );
  return rows[0] ?? null;
}

/** Each run's deliveries counted by subscription and status: one index range per run (messages_by_run). */
async function deliveryProgress(db: Queryable, runIds: number[]): Promise<Map<number, RunDelivery[]>> {
  const byRun = new Map<number, RunDelivery[]>();
  if (!runIds.length) return byRun;
  const { rows } = await db.query<
    Omit<RunDelivery, "rejected_first"> & { run_id: string; rejected_lists: unknown }
  >(
    `select m.run_id, d.subscription, count(*)::int as parts,
            count(*) filter (where d.status = 'delivered')::int as delivered,
            count(*) filter (where d.status = 'pending')::int as pending,
            count(*) filter (where d.status = 'failed')::int as failed,
            count(*) filter (where d.status = 'dead')::int as dead,
            count(*) filter (where d.status = 'superseded')::int as superseded,
            coalesce(sum(j.rejected_count) filter (where j.phase in ('done', 'failed')), 0)::int as rejected,
            coalesce(jsonb_agg(j.rejected order by d.id) filter (where j.phase in ('done', 'failed') and j.rejected_count > 0), '[]') as rejected_lists
     from stock_sync.messages m join stock_sync.deliveries d on d.message_id = m.id
     left join stock_sync.jobs j on j.delivery_id = d.id
     where m.run_id = any($1::bigint[])
     group by m.run_id, d.subscription order by d.subscription`,
    [runIds],
  );
  for (const { run_id, rejected_lists, ...r } of rows) {
    const list = byRun.get(Number(run_id)) ?? [];
    const first = (rejected_lists as { sku: string | null; location: string | null; reason: string }[][])
      .flat()
      .slice(0, REJECTED_SHOWN)
      .map((x) => `${x.sku ?? "?"}@${x.location ?? "?"}: ${x.reason}`);
    list.push({ ...r, rejected_first: first });
    byRun.set(Number(run_id), list);
  }
  return byRun;
}

/**
 * "oms-stock 3/4 (1 failed), erp 4/4": parts delivered of parts per subscription, for people.
 * @example describeDelivery([{ subscription: "oms", parts: 2, delivered: 2, … }]) // "oms 2/2"
 */
export function describeDelivery(list: readonly RunDelivery[]): string {
  return list
    .map((d) => {
      const other = (["failed", "dead", "superseded"] as const)
        .filter((s) => d[s] > 0)
        .map((s) => `${d[s]} ${s}`);
      if (d.rejected > 0) other.push(`${d.rejected} rejected by the OMS`);
      return `${d.subscription} ${d.delivered}/${d.parts}${other.length ? ` (${other.join(", ")})` : ""}`;
    })
    .join(", ");
}

/**
 * "fluent: 12 rejected by the OMS, first: A@S1: unknown product; …" per subscription that had
 * any, one line each (empty when none).
 */
export function describeRejected(list: readonly RunDelivery[]): string[] {
  return list
    .filter((d) => d.rejected > 0)
    .map(
      (d) => `${d.subscription}: ${d.rejected} rejected by the OMS, first: ${d.rejected_first.join("; ")}`,
    );
}

/** A run's status for people: an enqueued run whose every part reached every subscription is "delivered". */
export function runLabel(r: Pick<StockRunView, "status" | "delivery">): string {
  const done = r.delivery.length > 0 && r.delivery.every((d) => d.delivered === d.parts);
  return r.status === "enqueued" && done ? "delivered" : r.status;
}

/** Whether the last successful full is older than `afterMs`, on the database's clock. */
async function fullOverdue(db: Queryable, afterMs: number | undefined) {
  const { rows } = await db.query<{ at: Date | null; overdue: boolean }>(
    `select ok.at, coalesce(ok.at, first.at) < now() - $1 * interval '1 millisecond' as overdue
     from (select max(started_at) as at from stock_sync.stock_runs where kind = 'full' and status = 'enqueued') ok,
          (select min(started_at) as at from stock_sync.stock_runs) first`,
    [afterMs ?? 0],
  );
  const r = rows[0]!;
  return { at: r.at, overdue: afterMs === undefined ? null : r.overdue === true };
}

/**
 * The last full and delta runs, when the scheduler fires next (when this process runs it), and
 * whether the full is overdue (`fullOverdueAfterMs`, from the scheduler's full-due.ts).
 */
export async function stockStatus(
  db: Queryable,
  next: () => { full: Date | null; delta: Date | null } = () => ({ full: null, delta: null }),
  opts: { fullOverdueAfterMs?: number } = {},
): Promise<StockStatus> {
  const [lastFull, lastDelta, lastDeltaSent, overdue] = await Promise.all([
    latest(db, "kind = 'full' and status <> 'dry-run'"),
    latest(db, "kind = 'delta' and status <> 'dry-run'"),
    latest(db, "kind = 'delta' and status = 'enqueued'"),
    fullOverdue(db, opts.fullOverdueAfterMs),
  ]);
  const runs = [lastFull, lastDelta, lastDeltaSent];
  const progress = await deliveryProgress(
    db,
    runs.filter((r) => r !== null).map((r) => Number(r.id)),
  );
  const withDelivery = (r: Omit<StockRunView, "delivery"> | null): StockRunView | null =>
    r && { ...r, delivery: progress.get(Number(r.id)) ?? [] };
  const { full, delta } = next();
  return {
    last_full: withDelivery(lastFull),
    last_delta: withDelivery(lastDelta),
    last_delta_sent: withDelivery(lastDeltaSent),
    next_full: full,
    next_delta: delta,
    full_overdue: overdue.overdue,
    last_successful_full_at: overdue.at,
  };
}
