import type { Queryable } from "../db/db.js";
import { renderNotification } from "../notifications/render.js";
import {
  NOTIFICATION_SUBJECTS,
  type NotificationKind,
  type Subscription,
} from "../subscriptions/subscriptions.js";
import { enqueue } from "./enqueue.js";
import { assess } from "./health.js";
import { storedReply } from "./reply.js";
import type { AttemptResult, Decision } from "./retry.js";

export type AttemptRecord = {
  deliveryId: number;
  startedAt: Date;
  /** The request's own time (what the attempt log shows): not counted from `startedAt`. */
  durationMs: number;
  /**
   * When the answer had come at the latest, on the database's clock (answer.ts): what a process
   * taking the subscription over counts in its rate-limit window. Unset in records made by hand.
   */
  answeredBy?: Date;
  result: AttemptResult;
  /** As received; what is stored of it is `storedReply`'s choice. */
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
  /**
   * The process that made the attempts: their outcomes are written only while it still holds the
   * subscription's lease (unset: not checked, for tools that record by hand).
   */
  owner?: string;
  /** Attempts whose outcome was not written: the delivery is no longer owed, or the lease moved. */
  onFenced?: (deliveryIds: number[]) => void;
};

/**
 * The fence every outcome write passes: of these deliveries, the ones still owed (not delivered,
 * dead or superseded meanwhile) whose subscription's lease `owner` still holds. Locks them, in id
 * order, so nothing changes them before the outcome is written. A late result (a request that
 * outlived its lease, a receiver answering after a newer full superseded the part) must never
 * undo what another process or a newer message decided.
 */
async function fence(tx: Queryable, ids: number[], owner: string | undefined): Promise<Set<number>> {
  const { rows } = await tx.query<{ id: number | string }>(
    `select d.id from stock_sync.deliveries d join stock_sync.subscriptions s on s.name = d.subscription
     where d.id = any($1::int8[]) and d.status in ('pending', 'failed')
       and ($2::text is null or s.lease_owner = $2)
     order by d.id for update of d`,
    [ids, owner ?? null],
  );
  return new Set(rows.map((r) => Number(r.id)));
}

const NEW_STATUS: Record<Decision["kind"], string> = {
  delivered: "delivered",
  retry: "failed",
  dead: "dead",
  // kept owed: it goes out when the subscription is resumed
  gone: "failed",
};

/** The columns an attempt writes, derived from its result and decision (pure). */
export function attemptColumns(rec: AttemptRecord) {
  const { decision, result } = rec;
  // (a 410 that deactivates the subscription makes it due at once: see justDeactivated)
  const nextAt =
    decision.kind === "retry" || decision.kind === "gone"
      ? new Date(rec.decidedAt.getTime() + decision.delayMs)
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
  all: readonly AttemptRecord[],
  ctx: OutcomeContext,
): Promise<string[]> {
  const owed = await fence(
    tx,
    all.map((r) => r.deliveryId),
    ctx.owner,
  );
  const recs = all.filter((r) => owed.has(r.deliveryId));
  if (recs.length < all.length) {
    ctx.onFenced?.(all.filter((r) => !owed.has(r.deliveryId)).map((r) => r.deliveryId));
  }
  if (recs.length === 0) return [];
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
  ctx: Pick<OutcomeContext, "subscription" | "now" | "owner" | "onFenced">,
): Promise<boolean> {
  const [ok] = await recordSuccessGroups(db, [{ subscription: ctx.subscription.name, recs }], ctx);
  if (!ok?.ok) return false;
  if (ok.fenced.length) ctx.onFenced?.(ok.fenced);
  return true;
}

/** One subscription's delivered attempts, for `recordSuccessGroups`. */
export type SuccessGroup = { subscription: string; recs: readonly AttemptRecord[] };

/**
 * `recordSuccesses` for several subscriptions at once, still one statement: twenty busy
 * subscriptions cost one round trip and one commit, as one does (#16). Per group, in order:
 * whether it was written (false: that subscription is failing or missing, nothing of it was
 * written) and which of its attempts the fence dropped.
 */
export async function recordSuccessGroups(
  db: Queryable,
  groups: readonly SuccessGroup[],
  ctx: Pick<OutcomeContext, "now" | "owner">,
): Promise<{ ok: boolean; fenced: number[] }[]> {
  const recs = groups.flatMap((g) => g.recs.map((r) => ({ r, sub: g.subscription })));
  const status = recs.map(({ r }) => attemptColumns(r).status);
  const lastStatus = groups.map((g) => (g.recs.length ? attemptColumns(g.recs.at(-1)!).status : null));
  const { rows } = await db.query<{ ok: string[]; written: (number | string)[] }>(
    `with s as (select name, consecutive_failures = 0 and not failing_notified as ok
                from stock_sync.subscriptions where name = any($6::text[])),
     u as (select u.* from unnest($1::int8[], $2::timestamptz[], $3::int[], $4::int[], $5::timestamptz[], $10::text[],
                                  $11::timestamptz[])
             as u(id, started_at, duration_ms, http_status, at, sub, answered_by)
           join s on s.name = u.sub and s.ok
           -- the fence (see fence()): still owed, and the lease still ours
           join stock_sync.deliveries f on f.id = u.id and f.subscription = u.sub and f.status in ('pending', 'failed')
           join stock_sync.subscriptions l on l.name = f.subscription and ($9::text is null or l.lease_owner = $9)),
     d as (update stock_sync.deliveries d set status = 'delivered', attempts = d.attempts + 1,
             updated_at = u.at, delivered_at = u.at, last_status = u.http_status, last_error = null
           from u where d.id = u.id and d.status in ('pending', 'failed')
           returning d.id),
     -- only for the deliveries updated (locked, still owed): the attempt rows have no foreign
     -- key (0013), so one is never written for a delivery that is gone or no longer owed
     a as (insert into stock_sync.attempts (delivery_id, attempted_at, duration_ms, status, response_body, outcome,
             answered_by)
           select u.id, u.started_at, u.duration_ms, u.http_status, null, 'delivered', u.answered_by
           from d join u on u.id = d.id),
     -- as countFailure's success path: the time of the last success, at most once a second
     t as (update stock_sync.subscriptions x set last_success_at = $7, last_status = g.last_status
           from unnest($6::text[], $8::int[]) as g(name, last_status) join s on s.name = g.name and s.ok
           where x.name = g.name
             and (x.last_success_at is null or x.last_success_at < $7::timestamptz - interval '1 second'))
     select (select coalesce(array_agg(name), '{}') from s where ok) as ok,
            (select coalesce(array_agg(id), '{}') from d) as written`,
    [
      recs.map(({ r }) => r.deliveryId),
      recs.map(({ r }) => r.startedAt),
      recs.map(({ r }) => Math.round(r.durationMs)),
      status,
      recs.map(({ r }) => r.decidedAt),
      groups.map((g) => g.subscription),
      ctx.now,
      lastStatus,
      ctx.owner ?? null,
      recs.map(({ sub }) => sub),
      recs.map(({ r }) => r.answeredBy ?? null),
    ],
    // once per batch of outcomes, and a plan by primary key whatever the values (db.ts)
    { name: "stock_sync_record_successes" },
  );
  const ok = new Set(rows[0]?.ok ?? []);
  const written = new Set((rows[0]?.written ?? []).map(Number));
  return groups.map((g) => ({
    ok: ok.has(g.subscription),
    fenced: ok.has(g.subscription)
      ? g.recs.filter((r) => !written.has(r.deliveryId)).map((r) => r.deliveryId)
      : [],
  }));
}

function insertAttempts(
  tx: Queryable,
  recs: readonly AttemptRecord[],
  cols: ReturnType<typeof attemptColumns>[],
) {
  return tx.query(
    `insert into stock_sync.attempts (delivery_id, attempted_at, duration_ms, status, error_class, error,
       response_body, outcome, next_attempt_at, answered_by)
     select * from unnest($1::int8[], $2::timestamptz[], $3::int[], $4::int[], $5::text[], $6::text[],
       $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[])`,
    [
      recs.map((r) => r.deliveryId),
      recs.map((r) => r.startedAt),
      recs.map((r) => Math.round(r.durationMs)),
      cols.map((c) => c.status),
      cols.map((c) => c.errorClass),
      cols.map((c) => c.error),
      recs.map((r) => storedReply(r.result, r.responseBody)),
      recs.map((r) => r.decision.kind),
      cols.map((c) => c.nextAt),
      recs.map((r) => r.answeredBy ?? null),
    ],
  );
}

function updateDeliveries(
  tx: Queryable,
  recs: readonly AttemptRecord[],
  cols: ReturnType<typeof attemptColumns>[],
) {
  return tx.query(
    // A throttled attempt (the receiver asked us to wait) uses up no retry.
    `update stock_sync.deliveries d set status = u.status,
       attempts = d.attempts + case when u.throttled then 0 else 1 end, updated_at = u.at,
       next_attempt_at = coalesce(u.next_at, d.next_attempt_at),
       delivered_at = case when u.status = 'delivered' then u.at end,
       last_status = u.http_status, last_error = u.error
     from unnest($1::int8[], $2::timestamptz[], $3::timestamptz[], $4::int[], $5::text[], $6::text[], $7::bool[])
       as u(id, at, next_at, http_status, error, status, throttled)
     -- only rows that passed fence() (still owed, locked): a late result never revives a
     -- superseded, dead or delivered row
     where d.id = u.id`,
    [
      recs.map((r) => r.deliveryId),
      recs.map((r) => r.decidedAt),
      cols.map((c) => c.nextAt),
      cols.map((c) => c.status),
      cols.map((c) => c.error),
      recs.map((r) => NEW_STATUS[r.decision.kind]),
      recs.map((r) => isThrottled(r.decision)),
    ],
  );
}

const isThrottled = (d: Decision) => d.kind === "retry" && d.throttled === true;

/**
 * The receiver asked for a pause: no process sends for this subscription before then (the
 * fetch and the last checks read it, on the database's clock). Not a failure: the count and the
 * notifications stay as they are.
 */
async function throttle(tx: Queryable, name: string, delayMs: number): Promise<void> {
  await tx.query(
    `update stock_sync.subscriptions set throttled_until = greatest(coalesce(throttled_until, now()),
       now() + $2 * interval '1 millisecond') where name = $1`,
    [name, delayMs],
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
  const name = ctx.subscription.name;
  if (decision.kind === "retry" && decision.throttled) {
    await throttle(tx, name, decision.delayMs);
    return [];
  }
  const failures = await countFailure(tx, name, decision.kind === "delivered", ctx.now, status, error);
  const signals = assess(
    decision,
    failures,
    ctx.subscription.retries_until_failure,
    ctx.subscription.internal,
  );
  const notify = [...signals.notify];
  if (signals.deactivate && (await deactivate(tx, name, signals.deactivate, ctx.now))) {
    notify.push("deactivated");
    if (decision.kind === "gone") await dueAtOnce(tx, rec);
  }
  const wake: string[] = [];
  for (const kind of notify) {
    const detail = kind === "deactivated" ? (signals.deactivate ?? "") : (error ?? "delivered again");
    const facts = { failures: failures.after, status, error, detail };
    // Each deactivation and each recovery is news; only `failing` (a flapping receiver) is throttled.
    const sent = await notify1(tx, ctx, kind, facts, name, kind === "failing");
    if (sent && (kind === "failing" || kind === "recovered")) {
      await tx.query("update stock_sync.subscriptions set failing_notified = $2 where name = $1", [
        name,
        kind === "failing",
      ]);
    }
    wake.push(...(sent ?? []));
  }
  return wake;
}

/** The 410 that deactivated its subscription: due at once, so it goes first on resume. */
async function dueAtOnce(tx: Queryable, rec: AttemptRecord): Promise<void> {
  await tx.query(
    "update stock_sync.deliveries set next_attempt_at = $2 where id = $1 and status = 'failed'",
    [rec.deliveryId, rec.decidedAt],
  );
  await tx.query(
    `update stock_sync.attempts set next_attempt_at = $2
     where id = (select max(id) from stock_sync.attempts where delivery_id = $1)`,
    [rec.deliveryId, rec.decidedAt],
  );
}

type Failures = { before: number; after: number; failingNotified: boolean };

async function countFailure(
  tx: Queryable,
  name: string,
  success: boolean,
  now: Date,
  status: number | null,
  error: string | null,
): Promise<Failures> {
  if (success) {
    // The common case, a success after successes, must not lock the subscription row: every
    // concurrent attempt of the subscription would queue on that lock, one commit at a time.
    const { rows } = await tx.query<{ n: number; notified: boolean }>(
      "select consecutive_failures as n, failing_notified as notified from stock_sync.subscriptions where name = $1",
      [name],
    );
    if ((rows[0]?.n ?? 0) === 0 && !rows[0]?.notified) {
      await tx.query(
        `update stock_sync.subscriptions set last_success_at = $2, last_status = $3
         where name = $1 and (last_success_at is null or last_success_at < $2::timestamptz - interval '1 second')`,
        [name, now, status],
      );
      return { before: 0, after: 0, failingNotified: false };
    }
  }
  const { rows } = await tx.query<Failures>(
    `update stock_sync.subscriptions s set
       consecutive_failures = case when $2 then 0 else s.consecutive_failures + 1 end,
       last_success_at = case when $2 then $3 else s.last_success_at end,
       last_failure_at = case when $2 then s.last_failure_at else $3 end,
       last_status = $4, last_error = case when $2 then s.last_error else $5 end
     from (select consecutive_failures as n from stock_sync.subscriptions where name = $1 for update) old
     where s.name = $1
     returning old.n as before, s.consecutive_failures as after, s.failing_notified as "failingNotified"`,
    [name, success, now, status, error],
  );
  return rows[0] ?? { before: 0, after: 0, failingNotified: false };
}

async function deactivate(tx: Queryable, name: string, reason: string, now: Date): Promise<boolean> {
  const { rowCount } = await tx.query(
    `update stock_sync.subscriptions set status = 'deactivated', status_reason = $2, status_changed_at = $3
     where name = $1 and status = 'enabled'`,
    [name, reason, now],
  );
  return rowCount === 1;
}

type Facts = { failures?: number; status?: number | null; error?: string | null; detail: string };

/** Enqueues an ops.* event unless one of the same kind about the same subscription went out recently. */
export async function notifyOnce(
  tx: Queryable,
  ctx: Pick<OutcomeContext, "all" | "now" | "notifyMinIntervalMs">,
  kind: NotificationKind,
  facts: Facts,
  about: string,
): Promise<string[]> {
  return (await notify1(tx, ctx, kind, facts, about, true)) ?? [];
}

/**
 * Enqueues an ops.* event (throttled: unless one of its kind about `about` went out within the
 * min interval) and records when. Returns the subscriptions to wake, or null when throttled.
 */
async function notify1(
  tx: Queryable,
  ctx: Pick<OutcomeContext, "all" | "now" | "notifyMinIntervalMs">,
  kind: NotificationKind,
  facts: Facts,
  about: string,
  throttled: boolean,
): Promise<string[] | null> {
  const { rowCount } = await tx.query(
    `insert into stock_sync.notifications_sent (subscription, kind, sent_at) values ($1, $2, $3)
     on conflict (subscription, kind) do update set sent_at = excluded.sent_at
     where stock_sync.notifications_sent.sent_at <= $3::timestamptz - $4 * interval '1 millisecond'`,
    [about, kind, ctx.now, throttled ? ctx.notifyMinIntervalMs : 0],
  );
  if (throttled && rowCount !== 1) return null;
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
