import type { Queryable } from "../../src/db/db.js";

/**
 * The outbox after a receiver outage, built with a few set-based statements (generate_series):
 * `history` delivered rows, then a backlog of `backlog` order events fanned out to a `key`-ordered
 * and a `none`-ordered subscription, `keys` order ids among them. Under `key` each order's oldest
 * delivery failed 3 times and waits for its retry, the others never left `pending` (blocked
 * behind it); under `none` every delivery failed and waits. Retries are due between
 * `retryAfterS` and `retryAfterS + retryWithinS` from now.
 */
export type Outage = {
  history: number;
  backlog: number;
  keys: number;
  keyed: string;
  plain: string;
  retryWithinS: number;
  /** The earliest retry, from now (default 0: some may come due while the outage is measured). */
  retryAfterS?: number;
};

export async function buildOutage(db: Queryable, o: Outage): Promise<void> {
  const subs = [o.keyed, o.plain];
  // History: messages h_1…, each delivered to both subscriptions, a day ago and older.
  const messages = Math.ceil(o.history / subs.length);
  await db.query(
    `insert into stock_sync.messages (id, subject, payload, content_type, ordering_key, created_at)
     select 'h_' || g, 'order.created', convert_to('{"n":' || g || '}', 'UTF8'), 'application/json',
            'O-' || (g % $2::int), now() - interval '2 days' + g * interval '50 ms'
     from generate_series(1, $1::int) g`,
    [messages, o.keys],
  );
  await db.query(
    `insert into stock_sync.deliveries (message_id, subscription, ordering_key, status, attempts,
                                        next_attempt_at, created_at, updated_at, delivered_at)
     select m.id, s, m.ordering_key, 'delivered', 1, m.created_at, m.created_at, m.created_at, m.created_at
     from stock_sync.messages m cross join unnest($1::text[]) s
     where m.id like 'h\\_%' order by m.created_at, s`,
    [subs],
  );
  // The backlog: b_1…, in enqueue order, the last hour.
  await db.query(
    `insert into stock_sync.messages (id, subject, payload, content_type, ordering_key, created_at)
     select 'b_' || g, 'order.created', convert_to('{"n":' || g || '}', 'UTF8'), 'application/json',
            'O-' || (g % $2::int), now() - interval '1 hour' + g * interval '10 ms'
     from generate_series(1, $1::int) g`,
    [o.backlog, o.keys],
  );
  // A key's first backlog message is b_g with g ≤ keys: the head that was tried and failed.
  await db.query(
    `insert into stock_sync.deliveries (message_id, subscription, ordering_key, status, attempts,
                                        next_attempt_at, created_at, updated_at, last_status, last_error)
     select 'b_' || g, s, 'O-' || (g % $2::int), f.status, f.attempts,
            case when f.status = 'failed' then now() + ($6::int + random() * $5::int) * interval '1 second'
                 else c end,
            c, c, f.code, f.err
     from generate_series(1, $1::int) g
     cross join unnest($3::text[]) s
     cross join lateral (select now() - interval '1 hour' + g * interval '10 ms' as c) t
     cross join lateral (select case when s = $4 or g <= $2::int then 'failed' else 'pending' end as status) st
     cross join lateral (select st.status, case when st.status = 'failed' then 3 else 0 end as attempts,
                                case when st.status = 'failed' then 503 end as code,
                                case when st.status = 'failed' then 'HTTP 503' end as err) f
     order by g, s`,
    [o.backlog, o.keys, subs, o.plain, o.retryWithinS, o.retryAfterS ?? 0],
  );
}

/** The receiver is back and the retry time has come: every owed delivery is due now. */
export const dueNow = (db: Queryable, subscription: string) =>
  db.query(
    `update stock_sync.deliveries set next_attempt_at = now()
     where subscription = $1 and status in ('pending', 'failed') and next_attempt_at > now()`,
    [subscription],
  );
