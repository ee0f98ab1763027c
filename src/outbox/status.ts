import type { Queryable } from "../db/db.js";

export type SubscriptionOverview = {
  name: string;
  status: string;
  status_reason: string | null;
  backlog: number;
  failed: number;
  dead: number;
  delivered_last_hour: number;
  failed_last_hour: number;
  consecutive_failures: number;
  last_success_at: Date | null;
  last_failure_at: Date | null;
  last_status: number | null;
  last_error: string | null;
  lease_owner: string | null;
};

/** One row per subscription with its counts: what `status`, /api/status and /status show. */
export async function subscriptionOverview(
  db: Queryable,
  now: Date,
  names?: string[],
): Promise<SubscriptionOverview[]> {
  const { rows } = await db.query<SubscriptionOverview>(
    `select s.name, s.status, s.status_reason, s.consecutive_failures, s.last_success_at, s.last_failure_at,
            s.last_status, s.last_error, case when s.lease_until > $1 then s.lease_owner end as lease_owner,
            coalesce(d.backlog, 0)::int as backlog, coalesce(d.failed, 0)::int as failed,
            coalesce(d.dead, 0)::int as dead,
            coalesce(a.delivered, 0)::int as delivered_last_hour, coalesce(a.failed, 0)::int as failed_last_hour
     from stock_sync.subscriptions s
     left join (select subscription,
                       count(*) filter (where status in ('pending', 'failed')) as backlog,
                       count(*) filter (where status = 'failed') as failed,
                       count(*) filter (where status = 'dead') as dead
                from stock_sync.deliveries where status in ('pending', 'failed', 'dead')
                group by subscription) d on d.subscription = s.name
     left join (select d.subscription,
                       count(*) filter (where a.outcome = 'delivered') as delivered,
                       count(*) filter (where a.outcome <> 'delivered') as failed
                from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id
                where a.attempted_at > $1::timestamptz - interval '1 hour'
                group by d.subscription) a on a.subscription = s.name
     where $2::text[] is null or s.name = any($2::text[])
     order by s.name`,
    [now, names ?? null],
  );
  return rows;
}
