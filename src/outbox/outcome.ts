import type { Queryable } from "../db/db.js";
import { renderNotification } from "../notifications/render.js";
import {
  NOTIFICATION_SUBJECTS,
  type NotificationKind,
  type Subscription,
} from "../subscriptions/subscriptions.js";
import { enqueue } from "./enqueue.js";
import { assess } from "./health.js";
import type { AttemptResult, Decision } from "./retry.js";

export type AttemptRecord = {
  deliveryId: number;
  startedAt: Date;
  durationMs: number;
  result: AttemptResult;
  responseBody: string | null;
  decision: Decision;
  /** When the decision was taken: retry delays count from here. */
  decidedAt: Date;
};

export type OutcomeContext = {
  subscription: Subscription;
  all: readonly Subscription[];
  now: Date;
  notifyMinIntervalMs: number;
};

const NEW_STATUS: Record<Decision["kind"], string> = {
  delivered: "delivered",
  retry: "failed",
  dead: "dead",
  // kept owed and due at once: it goes out when the subscription is resumed
  gone: "failed",
};

/** The columns an attempt writes, derived from its result and decision (pure). */
export function attemptColumns(rec: AttemptRecord) {
  const { decision, result } = rec;
  const nextAt =
    decision.kind === "retry"
      ? new Date(rec.decidedAt.getTime() + decision.delayMs)
      : decision.kind === "gone"
        ? rec.decidedAt
        : null;
  const status = result.kind === "response" ? result.status : null;
  const error =
    result.kind === "error"
      ? `${result.errorClass}: ${result.message}`
      : status && status >= 300
        ? `HTTP ${status}`
        : null;
  return { nextAt, status, error, errorClass: result.kind === "error" ? result.errorClass : null };
}

/**
 * Records attempts of one subscription, in the order they finished, and everything that follows
 * from them in the caller's transaction: the attempt rows and the deliveries' new state (one
 * statement each for the whole batch), the subscription's failure count and status, and any
 * notifications (enqueued as ops.* messages). Returns the subscriptions to wake.
 */
export async function recordOutcomes(
  tx: Queryable,
  recs: readonly AttemptRecord[],
  ctx: OutcomeContext,
): Promise<string[]> {
  const cols = recs.map(attemptColumns);
  await insertAttempts(tx, recs, cols);
  await updateDeliveries(tx, recs, cols);
  const wake: string[] = [];
  for (const [i, rec] of recs.entries()) {
    // After a success, further successes change nothing the subscription row keeps but the time.
    if (rec.decision.kind === "delivered" && recs[i - 1]?.decision.kind === "delivered") continue;
    wake.push(...(await subscriptionEffects(tx, rec, cols[i]!, ctx)));
  }
  return wake;
}

/**
 * The common case in one statement, so one round trip and one commit: every attempt of the batch
 * delivered, and the subscription not failing (nothing to reset, nobody to notify). Writes
 * nothing and returns false otherwise (the subscription is failing, or its row is missing): the
 * caller then records the batch with `recordOutcomes` in a transaction.
 */
export async function recordSuccesses(
  db: Queryable,
  recs: readonly AttemptRecord[],
  ctx: Pick<OutcomeContext, "subscription" | "now">,
): Promise<boolean> {
  const status = recs.map((r) => attemptColumns(r).status);
  const { rows } = await db.query<{ ok: boolean }>(
    `with s as (select consecutive_failures = 0 as ok from stock_sync.subscriptions where name = $7),
     u as (select * from unnest($1::int8[], $2::timestamptz[], $3::int[], $4::int[], $5::text[],
             $6::timestamptz[]) as u(id, started_at, duration_ms, http_status, body, at)
           where (select ok from s)),
     a as (insert into stock_sync.attempts (delivery_id, attempted_at, duration_ms, status, response_body, outcome)
           select id, started_at, duration_ms, http_status, body, 'delivered' from u),
     d as (update stock_sync.deliveries d set status = 'delivered', attempts = d.attempts + 1,
             updated_at = u.at, delivered_at = u.at, last_status = u.http_status, last_error = null
           from u where d.id = u.id),
     -- as countFailure's success path: the time of the last success, at most once a second
     t as (update stock_sync.subscriptions set last_success_at = $8, last_status = $9
           where name = $7 and (select ok from s)
             and (last_success_at is null or last_success_at < $8::timestamptz - interval '1 second'))
     select ok from s`,
    [
      recs.map((r) => r.deliveryId),
      recs.map((r) => r.startedAt),
      recs.map((r) => Math.round(r.durationMs)),
      status,
      recs.map((r) => r.responseBody),
      recs.map((r) => r.decidedAt),
      ctx.subscription.name,
      ctx.now,
      status.at(-1) ?? null,
    ],
  );
  return rows[0]?.ok === true;
}

function insertAttempts(
  tx: Queryable,
  recs: readonly AttemptRecord[],
  cols: ReturnType<typeof attemptColumns>[],
) {
  return tx.query(
    `insert into stock_sync.attempts (delivery_id, attempted_at, duration_ms, status, error_class, error,
       response_body, outcome, next_attempt_at)
     select * from unnest($1::int8[], $2::timestamptz[], $3::int[], $4::int[], $5::text[], $6::text[],
       $7::text[], $8::text[], $9::timestamptz[])`,
    [
      recs.map((r) => r.deliveryId),
      recs.map((r) => r.startedAt),
      recs.map((r) => Math.round(r.durationMs)),
      cols.map((c) => c.status),
      cols.map((c) => c.errorClass),
      cols.map((c) => c.error),
      recs.map((r) => r.responseBody),
      recs.map((r) => r.decision.kind),
      cols.map((c) => c.nextAt),
    ],
  );
}

function updateDeliveries(
  tx: Queryable,
  recs: readonly AttemptRecord[],
  cols: ReturnType<typeof attemptColumns>[],
) {
  return tx.query(
    `update stock_sync.deliveries d set status = u.status, attempts = d.attempts + 1, updated_at = u.at,
       next_attempt_at = coalesce(u.next_at, d.next_attempt_at),
       delivered_at = case when u.status = 'delivered' then u.at end,
       last_status = u.http_status, last_error = u.error
     from unnest($1::int8[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::text[], $6::text[])
       as u(id, at, next_at, http_status, error, status)
     -- a newer full may have superseded the message while it was in flight: only a success
     -- (the truth about what the receiver got) changes that, a failure must not revive it
     where d.id = u.id and (d.status <> 'superseded' or u.status = 'delivered')`,
    [
      recs.map((r) => r.deliveryId),
      recs.map((r) => r.decidedAt),
      cols.map((c) => c.nextAt),
      cols.map((c) => c.status),
      cols.map((c) => c.error),
      recs.map((r) => NEW_STATUS[r.decision.kind]),
    ],
  );
}

/** The subscription row after one attempt: failure count, deactivation, notifications. */
async function subscriptionEffects(
  tx: Queryable,
  rec: AttemptRecord,
  { status, error }: ReturnType<typeof attemptColumns>,
  ctx: OutcomeContext,
): Promise<string[]> {
  const { decision } = rec;
  const failures = await countFailure(
    tx,
    ctx.subscription.name,
    decision.kind === "delivered",
    ctx.now,
    status,
    error,
  );
  const signals = assess(
    decision,
    failures,
    ctx.subscription.retries_until_failure,
    ctx.subscription.internal,
  );
  const notify = [...signals.notify];
  if (signals.deactivate && (await deactivate(tx, ctx.subscription.name, signals.deactivate, ctx.now))) {
    notify.push("deactivated");
  }
  const wake: string[] = [];
  for (const kind of notify) {
    const detail = kind === "deactivated" ? (signals.deactivate ?? "") : (error ?? "delivered again");
    wake.push(
      ...(await notifyOnce(
        tx,
        ctx,
        kind,
        { failures: failures.after, status, error, detail },
        ctx.subscription.name,
      )),
    );
  }
  return wake;
}

async function countFailure(
  tx: Queryable,
  name: string,
  success: boolean,
  now: Date,
  status: number | null,
  error: string | null,
): Promise<{ before: number; after: number }> {
  if (success) {
    // The common case, a success after successes, must not lock the subscription row: every
    // concurrent attempt of the subscription would queue on that lock, one commit at a time.
    const { rows } = await tx.query<{ n: number }>(
      "select consecutive_failures as n from stock_sync.subscriptions where name = $1",
      [name],
    );
    if ((rows[0]?.n ?? 0) === 0) {
      await tx.query(
        `update stock_sync.subscriptions set last_success_at = $2, last_status = $3
         where name = $1 and (last_success_at is null or last_success_at < $2::timestamptz - interval '1 second')`,
        [name, now, status],
      );
      return { before: 0, after: 0 };
    }
  }
  const { rows } = await tx.query<{ before: number; after: number }>(
    `update stock_sync.subscriptions s set
       consecutive_failures = case when $2 then 0 else s.consecutive_failures + 1 end,
       last_success_at = case when $2 then $3 else s.last_success_at end,
       last_failure_at = case when $2 then s.last_failure_at else $3 end,
       last_status = $4, last_error = case when $2 then s.last_error else $5 end
     from (select consecutive_failures as n from stock_sync.subscriptions where name = $1 for update) old
     where s.name = $1 returning old.n as before, s.consecutive_failures as after`,
    [name, success, now, status, error],
  );
  return rows[0] ?? { before: 0, after: 0 };
}

async function deactivate(tx: Queryable, name: string, reason: string, now: Date): Promise<boolean> {
  const { rowCount } = await tx.query(
    `update stock_sync.subscriptions set status = 'deactivated', status_reason = $2, status_changed_at = $3
     where name = $1 and status = 'enabled'`,
    [name, reason, now],
  );
  return rowCount === 1;
}

/** Enqueues an ops.* event unless one of the same kind about the same subscription went out recently. */
export async function notifyOnce(
  tx: Queryable,
  ctx: Pick<OutcomeContext, "all" | "now" | "notifyMinIntervalMs">,
  kind: NotificationKind,
  facts: { failures?: number; status?: number | null; error?: string | null; detail: string },
  about: string,
): Promise<string[]> {
  const { rowCount } = await tx.query(
    `insert into stock_sync.notifications_sent (subscription, kind, sent_at) values ($1, $2, $3)
     on conflict (subscription, kind) do update set sent_at = excluded.sent_at
     where stock_sync.notifications_sent.sent_at <= $3::timestamptz - $4 * interval '1 millisecond'`,
    [about, kind, ctx.now, ctx.notifyMinIntervalMs],
  );
  if (rowCount !== 1) return [];
  const notification = {
    kind,
    subscription: about,
    at: ctx.now.toISOString(),
    detail: facts.detail,
    consecutiveFailures: facts.failures,
    lastStatus: facts.status ?? null,
    lastError: facts.error ?? null,
  };
  const subject = NOTIFICATION_SUBJECTS[kind];
  const payload = { type: subject, ...notification, ...renderNotification(notification) };
  const { subscriptions } = await enqueue(tx, ctx.all, {
    subject,
    payload: JSON.stringify(payload),
    contentType: "application/json",
    about,
    createdAt: ctx.now,
  });
  return subscriptions;
}
