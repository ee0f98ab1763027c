import type { Queryable } from "../db/db.js";

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
};

export type StockStatus = {
  last_full: StockRunView | null;
  last_delta: StockRunView | null;
  /** The newest delta that found changes (an empty one says nothing happened). */
  last_delta_sent: StockRunView | null;
  next_full: Date | null;
  next_delta: Date | null;
};

const RUN = `select id, kind, trigger, status, started_at, finished_at, rows, parts, detail,
  (extract(epoch from finished_at - started_at) * 1000)::int as duration_ms from stock_sync.stock_runs`;

async function latest(db: Queryable, where: string): Promise<StockRunView | null> {
  const { rows } = await db.query<StockRunView>(`${RUN} where ${where} order by id desc limit 1`);
  return rows[0] ?? null;
}

/** The last full and delta runs, and when the scheduler fires next (when this process runs it). */
export async function stockStatus(
  db: Queryable,
  next: () => { full: Date | null; delta: Date | null } = () => ({ full: null, delta: null }),
): Promise<StockStatus> {
  const [lastFull, lastDelta, lastDeltaSent] = await Promise.all([
    latest(db, "kind = 'full' and status <> 'dry-run'"),
    latest(db, "kind = 'delta' and status <> 'dry-run'"),
    latest(db, "kind = 'delta' and status = 'enqueued'"),
  ]);
  const { full, delta } = next();
  return {
    last_full: lastFull,
    last_delta: lastDelta,
    last_delta_sent: lastDeltaSent,
    next_full: full,
    next_delta: delta,
  };
}
