import type { Queryable } from "../../src/db/db.js";
import { notifyOutbox } from "../../src/outbox/queries.js";

/**
 * A backlog as the outbox holds it after a burst: `n` order events `msg_<tag>_1…n` (payload
 * `{"n":i}`), each with a delivery for every named subscription, in message order, inserted in
 * bulk (a few statements, whatever `n`); then the senders are woken. With `keys`, message i has
 * the ordering key `k<i mod keys>` (for `key`-ordered subscriptions).
 */
export async function insertBacklog(
  db: Queryable,
  opts: { tag: string; n: number; subscriptions: string[]; keys?: number },
): Promise<void> {
  const key = opts.keys ? `'k' || (g % ${Math.floor(opts.keys)})` : "null";
  await db.query(
    `insert into stock_sync.messages (id, subject, payload, content_type, ordering_key)
     select 'msg_' || $2 || '_' || g, 'order.created', convert_to('{"n":' || g || '}', 'UTF8'), 'application/json', ${key}
     from generate_series(1, $1::int) g`,
    [opts.n, opts.tag],
  );
  await db.query(
    `insert into stock_sync.deliveries (message_id, subscription, ordering_key)
     select 'msg_' || $2 || '_' || g, s, ${key} from generate_series(1, $1::int) g, unnest($3::text[]) s order by g, s`,
    [opts.n, opts.tag, opts.subscriptions],
  );
  await notifyOutbox(db, opts.subscriptions);
}
