import type { Db, Queryable } from "../db/db.js";
import { enqueue } from "../outbox/enqueue.js";
import { matchesAny } from "../subscriptions/subjects.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { type InboundEvent, messageIdFor } from "./event.js";

export type Intake = { duplicate: boolean; messageId: string; subscriptions: string[] };

/**
 * Stores an event and fans it out in ONE transaction, so it is either inbox + outbox or nothing.
 * The inbox insert comes first: a concurrent identical request waits on the primary key and then
 * finds a duplicate, so an event is stored and delivered once however many copies race.
 */
export function intake(
  db: Db,
  subs: readonly Subscription[],
  event: InboundEvent,
  payload: { body: Buffer; contentType: string },
  now: Date,
): Promise<Intake> {
  const messageId = messageIdFor(event.id);
  const routedTo = subs.filter((s) => matchesAny(s.subjects, event.subject)).length;
  return db.tx(async (tx) => {
    const fresh = await insertInbox(tx, { id: event.id, subject: event.subject, now, messageId, routedTo });
    if (!fresh) return { duplicate: true, messageId, subscriptions: [] };
    const { subscriptions } = await enqueue(tx, subs, {
      id: messageId,
      subject: event.subject,
      payload: payload.body,
      contentType: payload.contentType,
      orderingKey: event.orderId,
      createdAt: now,
    });
    return { duplicate: false, messageId, subscriptions };
  });
}

/** True when the row is new; false when the id was already in the inbox. */
async function insertInbox(
  tx: Queryable,
  row: { id: string; subject: string; now: Date; messageId: string; routedTo: number },
): Promise<boolean> {
  const { rows } = await tx.query(
    `insert into stock_sync.inbox (id, subject, received_at, message_id, routed_to)
     values ($1, $2, $3, $4, $5) on conflict (id) do nothing returning id`,
    [row.id, row.subject, row.now, row.messageId, row.routedTo],
  );
  return rows.length === 1;
}

export type InboxStatus = {
  received: number;
  received_last_hour: number;
  last_received_at: Date | null;
  unrouted: number;
  /** Subjects of the most recent unrouted events, newest first, each once. */
  last_unrouted_subjects: string[];
};

const LAST_UNROUTED = 10;

/** The `inbound` part of /api/status. */
export async function inboxStatus(db: Queryable, now: Date): Promise<InboxStatus> {
  const { rows } = await db.query<InboxStatus>(
    `select (select count(*) from stock_sync.inbox)::int as received,
            (select count(*) from stock_sync.inbox where received_at > $1::timestamptz - interval '1 hour')::int
              as received_last_hour,
            (select max(received_at) from stock_sync.inbox) as last_received_at,
            (select count(*) from stock_sync.inbox where routed_to = 0)::int as unrouted,
            coalesce((select array_agg(subject order by last desc) from (
               select subject, max(received_at) as last from (
                 select subject, received_at from stock_sync.inbox where routed_to = 0
                 order by received_at desc limit 100) recent
               group by subject order by last desc limit $2) s), '{}') as last_unrouted_subjects`,
    [now, LAST_UNROUTED],
  );
  return rows[0]!;
}
