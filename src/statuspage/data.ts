import type { Queryable } from "../db/db.js";
import { type DeliveryListing, listDeliveries } from "../outbox/admin.js";
import { type SubscriptionOverview, subscriptionOverview } from "../outbox/status.js";
import { type StockStatus, stockStatus } from "../export/status.js";
import type { Subscription } from "../subscriptions/subscriptions.js";

export type SubscriptionRow = SubscriptionOverview & {
  /** Requests in the last minute, per second, and the configured limit (null = unlimited). */
  rate: number;
  limit: number | null;
  internal: boolean;
};

export type MinuteBucket = { minute: Date; delivered: number; failed: number };

export type StatusPageData = {
  now: Date;
  subscriptions: SubscriptionRow[];
  stock: StockStatus;
  dead: DeliveryListing[];
  perMinute: MinuteBucket[];
  adminEnabled: boolean;
};

/** Everything the status page shows, read in a handful of grouped queries. */
export async function statusPageData(
  db: Queryable,
  subs: readonly Subscription[],
  opts: {
    now: Date;
    adminEnabled: boolean;
    next?: () => { full: Date | null; delta: Date | null };
    fullOverdueAfterMs?: number;
  },
): Promise<StatusPageData> {
  const byName = new Map(subs.map((s) => [s.name, s]));
  const [overview, stock, dead, perMinute, rates] = await Promise.all([
    subscriptionOverview(
      db,
      opts.now,
      subs.map((s) => s.name),
    ),
    stockStatus(db, opts.next, { fullOverdueAfterMs: opts.fullOverdueAfterMs }),
    listDeliveries(db, { status: "dead", limit: 20 }),
    deliveriesPerMinute(db, opts.now),
    attemptsLastMinute(db, opts.now),
  ]);
  const subscriptions = overview.map((o) => {
    const s = byName.get(o.name);
    const limit = s?.rate_limit ? (s.rate_limit.requests * 1000) / s.rate_limit.per : null;
    return { ...o, rate: (rates.get(o.name) ?? 0) / 60, limit, internal: s?.internal ?? false };
  });
  return { now: opts.now, subscriptions, stock, dead, perMinute, adminEnabled: opts.adminEnabled };
}

async function deliveriesPerMinute(db: Queryable, now: Date): Promise<MinuteBucket[]> {
  const { rows } = await db.query<MinuteBucket>(
    `select date_trunc('minute', attempted_at) as minute,
            count(*) filter (where outcome = 'delivered')::int as delivered,
            count(*) filter (where outcome <> 'delivered')::int as failed
     from stock_sync.attempts where attempted_at > $1::timestamptz - interval '1 hour'
     group by 1 order by 1`,
    [now],
  );
  return rows;
}

async function attemptsLastMinute(db: Queryable, now: Date): Promise<Map<string, number>> {
  const { rows } = await db.query<{ subscription: string; n: number }>(
    `select d.subscription, count(*)::int as n from stock_sync.attempts a
     join stock_sync.deliveries d on d.id = a.delivery_id
     where a.attempted_at > $1::timestamptz - interval '1 minute' group by 1`,
    [now],
  );
  return new Map(rows.map((r) => [r.subscription, r.n]));
}
