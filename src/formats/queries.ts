import type { Queryable } from "../db/db.js";

/**
 * The outbox writes of per-subscription bodies, in batches: a full cut one row per message
 * (VTEX) is 10,000 messages, and three statements each took 20 s on the embedded database.
 */

/** Takes `n` consecutive sequence numbers of the subscription; resolves to the first. */
export async function takeSequences(db: Queryable, subscription: string, n: number): Promise<number> {
  const { rows } = await db.query<{ first: string }>(
    `insert into stock_sync.subscriptions (name, next_sequence) values ($1, $2::int8 + 1)
     on conflict (name) do update set next_sequence = stock_sync.subscriptions.next_sequence + $2::int8
     returning next_sequence - $2::int8 as first`,
    [subscription, n],
  );
  return Number(rows[0]!.first);
}

export type OwnMessage = {
  id: string;
  subject: string;
  payload: Buffer;
  contentType: string;
  headers: Record<string, string>;
  runId: number;
  sequence: number;
};

// Above this a payload goes in its own statement: pg sends a Buffer parameter as binary, but a
// bytea[] as hex text (twice the bytes, parsed by the server): 10 s more for a 55 MB full.
const OWN_STATEMENT_BYTES = 16 * 1024;

/** Messages and their one delivery each, in this order (delivery ids follow it). */
export async function insertOwnMessages(db: Queryable, subscription: string, batch: readonly OwnMessage[]) {
  if (!batch.length) return;
  const small = batch.filter((m) => m.payload.length < OWN_STATEMENT_BYTES);
  for (const m of batch.filter((m) => m.payload.length >= OWN_STATEMENT_BYTES)) {
    await db.query(
      `insert into stock_sync.messages (id, subject, payload, content_type, headers, run_id)
       values ($1, $2, $3, $4, $5::jsonb, $6)`,
      [m.id, m.subject, m.payload, m.contentType, JSON.stringify(m.headers), m.runId],
    );
  }
  if (small.length)
    await db.query(
      `insert into stock_sync.messages (id, subject, payload, content_type, headers, run_id)
       select * from unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::jsonb[], $6::int8[])`,
      [
        small.map((m) => m.id),
        small.map((m) => m.subject),
        small.map((m) => m.payload),
        small.map((m) => m.contentType),
        small.map((m) => JSON.stringify(m.headers)),
        small.map((m) => m.runId),
      ],
    );
  await db.query(
    `insert into stock_sync.deliveries (message_id, subscription, sequence)
     select id, $2, q from unnest($1::text[], $3::int8[]) with ordinality as t(id, q, n) order by n`,
    [batch.map((m) => m.id), subscription, batch.map((m) => m.sequence)],
  );
}
