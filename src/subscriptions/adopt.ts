import type { Queryable } from "../db/db.js";
import type { Subscription } from "./subscriptions.js";

/**
 * Notification targets were once named by position (`notify:<list>:<i>`). On start, the
 * undelivered notifications still held under such a name move to the target now at that position
 * (where the older version would have sent them: the lists as they are now decide, this once),
 * unless that target already owes the message; then the old rows with nothing left to send go.
 * Returns how many deliveries moved. A position no list has any more keeps its rows (visible in
 * `deliveries`, never sent).
 */
export async function adoptFormerTargetNames(db: Queryable, subs: readonly Subscription[]): Promise<number> {
  let moved = 0;
  for (const s of subs) {
    if (!s.formerNames?.length) continue;
    const { rowCount } = await db.query(
      `update stock_sync.deliveries d set subscription = $1
       where d.id in (select distinct on (message_id) id from stock_sync.deliveries
                      where subscription = any($2::text[]) and status in ('pending', 'failed')
                      order by message_id, id)
         and not exists (select 1 from stock_sync.deliveries x where x.message_id = d.message_id and x.subscription = $1)`,
      [s.name, s.formerNames],
    );
    moved += rowCount;
  }
  await db.query(
    `delete from stock_sync.subscriptions s where s.name ~ '^notify:[a-z_]+:[0-9]+$'
     and not exists (select 1 from stock_sync.deliveries d
                     where d.subscription = s.name and d.status in ('pending', 'failed'))`,
  );
  return moved;
}
