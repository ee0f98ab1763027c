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

/**
 * Records one attempt and everything that follows from it in the caller's transaction: the
 * attempt row, the delivery's new state, the subscription's failure count and status, and any
 * notifications (enqueued as ops.* messages). Returns the subscriptions to wake.
 */
export async function recordOutcome(
  tx: Queryable,
  rec: AttemptRecord,
  ctx: OutcomeContext,
): Promise<string[]> {
  const { decision, result } = rec;
  const nextAt =
    decision.kind === "retry"
      ? new Date(ctx.now.getTime() + decision.delayMs)
      : decision.kind === "gone"
        ? ctx.now
        : null;
  const status = result.kind === "response" ? result.status : null;
  const error =
    result.kind === "error"
      ? `${result.errorClass}: ${result.message}`
      : status && status >= 300
        ? `HTTP ${status}`
        : null;
  await tx.query(
    `insert into stock_sync.attempts (delivery_id, attempted_at, duration_ms, status, error_class, error,
       response_body, outcome, next_attempt_at) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [
      rec.deliveryId,
      rec.startedAt,
      Math.round(rec.durationMs),
      status,
      result.kind === "error" ? result.errorClass : null,
      error,
      rec.responseBody,
      decision.kind,
      nextAt,
    ],
  );
  await tx.query(
    `update stock_sync.deliveries set status = $6, attempts = attempts + 1, updated_at = $2,
       next_attempt_at = coalesce($3::timestamptz, next_attempt_at),
       delivered_at = case when $6 = 'delivered' then $2::timestamptz end,
       last_status = $4, last_error = $5 where id = $1`,
    [rec.deliveryId, ctx.now, nextAt, status, error, NEW_STATUS[decision.kind]],
  );
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
