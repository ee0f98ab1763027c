import type { Queryable } from "../db/db.js";

/**
 * Deletes delivered (and superseded) deliveries older than the retention, their attempts,
 * messages no delivery needs any more, old inbox ids whose message is gone, empty delta runs and
 * old answer times of import-job requests.
 * Undelivered messages are never purged.
 */
export async function purgeDelivered(db: Queryable, now: Date, retentionMs: number): Promise<number> {
  const cutoff = new Date(now.getTime() - retentionMs);
  const { rowCount } = await db.query(
    `delete from stock_sync.deliveries where status in ('delivered', 'superseded') and updated_at < $1`,
    [cutoff],
  );
  await db.query(
    `delete from stock_sync.messages m where m.created_at < $1
     and not exists (select 1 from stock_sync.deliveries d where d.message_id = m.id)`,
    [cutoff],
  );
  // An inbound id is remembered for as long as its message is kept (an undelivered one is kept
  // for ever): a late copy is then a duplicate, never a second message under the same id.
  await db.query(
    `delete from stock_sync.inbox i where i.received_at < $1
     and not exists (select 1 from stock_sync.messages m where m.id = i.message_id)`,
    [cutoff],
  );
  // each write prunes its own subscription's; these are of subscriptions no longer sending
  await db.query("delete from stock_sync.job_requests where answered_by < $1", [cutoff]);
  await db.query(
    "delete from stock_sync.stock_runs where finished_at < $1 and status in ('empty', 'dry-run')",
    [cutoff],
  );
  return rowCount;
}
