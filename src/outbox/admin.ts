import type { Queryable } from "../db/db.js";
import { ConnectorError } from "../errors.js";
import { notifyOutbox } from "./queries.js";

/** Operations on subscriptions and deliveries, shared by the CLI and the admin API. */

export async function setSubscriptionStatus(
  db: Queryable,
  name: string,
  status: "enabled" | "paused",
  now: Date,
  reason: string,
): Promise<{ name: string; status: string; previous: string }> {
  const { rows } = await db.query<{ previous: string }>(
    `with old as (select status from stock_sync.subscriptions where name = $1 for update)
     update stock_sync.subscriptions s set status = $2, status_reason = $3, status_changed_at = $4,
       -- a resume starts a new count, so the next run of failures can reach \`failing\` again
       consecutive_failures = case when $2 = 'enabled' then 0 else s.consecutive_failures end
     from old where s.name = $1 returning old.status as previous`,
    [name, status, reason, now],
  );
  if (!rows[0]) throw new ConnectorError("NOT_FOUND", `no subscription named "${name}"`);
  // Wakes the process sending for it (a resume should not wait for the next poll).
  await notifyOutbox(db, [name]);
  return { name, status, previous: rows[0].previous };
}

export const DELIVERY_STATUSES = ["pending", "failed", "delivered", "dead", "superseded"] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

export type DeliveryListing = {
  id: number;
  message_id: string;
  subscription: string;
  subject: string;
  status: DeliveryStatus;
  attempts: number;
  sequence: number | null;
  created_at: Date;
  updated_at: Date;
  next_attempt_at: Date;
  last_status: number | null;
  last_error: string | null;
};

export async function listDeliveries(
  db: Queryable,
  filter: { status?: string; subscription?: string; limit?: number },
): Promise<DeliveryListing[]> {
  if (filter.status && !DELIVERY_STATUSES.includes(filter.status as DeliveryStatus)) {
    throw new ConnectorError("INVALID_INPUT", `status: expected one of ${DELIVERY_STATUSES.join(", ")}`);
  }
  const { rows } = await db.query<DeliveryListing>(
    `select d.id, d.message_id, d.subscription, m.subject, d.status, d.attempts, d.sequence, d.created_at,
            d.updated_at, d.next_attempt_at, d.last_status, d.last_error
     from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
     where ($1::text is null or d.status = $1) and ($2::text is null or d.subscription = $2)
     order by d.id desc limit $3`,
    [filter.status ?? null, filter.subscription ?? null, filter.limit ?? 100],
  );
  return rows;
}

export type ReplaySelection =
  | { ids: string[] }
  | { subscription: string; since: Date; until?: Date | undefined };

/**
 * Dead or failed deliveries go out again, now, with the same webhook-id and a fresh retry round.
 * `ids` are delivery ids or message ids (a message id replays it to every subscription it failed for).
 * A stock message older than stock already delivered to its subscription would overwrite newer
 * stock at the OMS (SPEC §9): refused, nothing replayed, unless `force`.
 */
export async function replay(
  db: Queryable,
  sel: ReplaySelection,
  now: Date,
  opts: { force?: boolean } = {},
): Promise<{ id: number; subscription: string }[]> {
  const where =
    "ids" in sel
      ? "(d.id::text = any($2::text[]) or d.message_id = any($2::text[]))"
      : "d.subscription = $2 and d.created_at >= $3 and ($4::timestamptz is null or d.created_at < $4)";
  const values = "ids" in sel ? [now, sel.ids] : [now, sel.subscription, sel.since, sel.until ?? null];
  if (!opts.force) {
    const stale = await staleStock(db, where, values);
    if (stale.length) throw new ConnectorError("STALE_STOCK", staleMessage(stale));
  }
  const { rows } = await db.query<{ id: number; subscription: string }>(
    `update stock_sync.deliveries d set status = 'pending', attempts = 0, next_attempt_at = $1, updated_at = $1
     where ${where} and d.status in ('dead', 'failed') returning d.id, d.subscription`,
    values,
  );
  if (rows.length) await notifyOutbox(db, [...new Set(rows.map((r) => r.subscription))]);
  return rows;
}

type Stale = { id: number; subscription: string; sequence: number; newer: number };

/** Selected stock deliveries with a newer stock message of the same subscription delivered. */
async function staleStock(db: Queryable, where: string, values: unknown[]): Promise<Stale[]> {
  const { rows } = await db.query<Stale>(
    `select d.id::int as id, d.subscription, d.sequence::int as sequence, newer.sequence::int as newer
     from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
     cross join lateral (
       select max(n.sequence) as sequence from stock_sync.deliveries n
       join stock_sync.messages nm on nm.id = n.message_id
       where n.subscription = d.subscription and n.status = 'delivered' and nm.run_id is not null
         and n.sequence > d.sequence) newer
     -- $1 (now) belongs to the update sharing this filter; referenced so it has a type
     where $1::timestamptz is not null and ${where} and d.status in ('dead', 'failed')
       and m.run_id is not null and newer.sequence is not null
     order by d.id`,
    values,
  );
  return rows;
}

function staleMessage(stale: readonly Stale[]): string {
  const s = stale[0]!;
  const more = stale.length > 1 ? ` (and ${stale.length - 1} more)` : "";
  return (
    `delivery ${s.id} is stock sequence ${s.sequence} of ${s.subscription}, older than stock sequence ${s.newer} ` +
    `already delivered${more}: replaying it would overwrite newer stock at the OMS. Nothing was replayed. ` +
    "A full snapshot (`stock-sync snapshot`) resends current stock; use --force (API: ?force=true) to replay anyway"
  );
}

/** The statuses of the deliveries an id names (a delivery id, or a message id for all of its). */
export const deliveryStatuses = async (db: Queryable, id: string) =>
  (
    await db.query<{ status: string }>(
      `select distinct status from stock_sync.deliveries
       where id::text = $1 or message_id = $1 order by status`,
      [id],
    )
  ).rows.map((r) => r.status);
