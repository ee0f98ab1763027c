/**
 * A delivery's job as stored (stock_sync.jobs, job_runs): the OMS's answers to each step, so a
 * restart or another process resumes polling rather than sending again; and what it rejected.
 */
import type { Queryable } from "../db/db.js";
import type { RejectedRow } from "./verdict.ts";

export type JobPhase = "sending" | "polling" | "done" | "failed";

export type JobRow = {
  delivery_id: number;
  subscription: string;
  phase: JobPhase;
  responses: Record<string, unknown>;
  polling_since: Date | null;
  polls: number;
  stopped_at: Date | null;
  last_poll: unknown;
  rejected: RejectedRow[];
  rejected_count: number;
  attempt: number;
  updated_at: Date;
};

export async function loadJob(db: Queryable, deliveryId: number): Promise<JobRow | null> {
  const { rows } = await db.query<JobRow>("select * from stock_sync.jobs where delivery_id = $1", [
    deliveryId,
  ]);
  return rows[0] ? { ...rows[0], delivery_id: Number(rows[0].delivery_id) } : null;
}

/** Starts an attempt's job: phase `sending`, the answers of an earlier attempt forgotten. */
export async function startJob(
  db: Queryable,
  deliveryId: number,
  subscription: string,
  snapshotId: string | null,
  now: Date,
) {
  await db.query(
    `insert into stock_sync.jobs (delivery_id, subscription, phase, updated_at, attempt, snapshot_id)
     values ($1, $2, 'sending', $3, 1, $4)
     on conflict (delivery_id) do update set phase = 'sending', responses = '{}', polling_since = null,
       polls = 0, last_poll = null, rejected = '[]', rejected_count = 0, updated_at = $3,
       attempt = stock_sync.jobs.attempt + 1`,
    [deliveryId, subscription, now, snapshotId],
  );
}

/** The OMS accepted the part: from now on, a restart polls instead of sending. */
export async function startPolling(
  db: Queryable,
  deliveryId: number,
  responses: Record<string, unknown>,
  now: Date,
) {
  await db.query(
    `update stock_sync.jobs set phase = 'polling', responses = $2::jsonb, polling_since = $3, updated_at = $3
     where delivery_id = $1`,
    [deliveryId, JSON.stringify(responses), now],
  );
}

/** An attempt stopped polling before the job ended: the next one resumes it. */
export async function markStopped(db: Queryable, deliveryId: number, now: Date) {
  await db.query("update stock_sync.jobs set stopped_at = $2, updated_at = $2 where delivery_id = $1", [
    deliveryId,
    now,
  ]);
}

export async function recordPoll(db: Queryable, deliveryId: number, answer: unknown, now: Date) {
  await db.query(
    `update stock_sync.jobs set polls = polls + 1, last_poll = $2::jsonb, updated_at = $3 where delivery_id = $1`,
    [deliveryId, JSON.stringify(answer ?? null), now],
  );
}

/** The job's end: done or failed, with the records the OMS rejected. */
export async function endJob(
  db: Queryable,
  deliveryId: number,
  phase: "done" | "failed",
  rejected: { rows: RejectedRow[]; total: number },
  now: Date,
) {
  await db.query(
    `update stock_sync.jobs set phase = $2, rejected = $3::jsonb, rejected_count = $4, updated_at = $5
     where delivery_id = $1`,
    [deliveryId, phase, JSON.stringify(rejected.rows), rejected.total, now],
  );
}

/** The answer of `open` for this run, if a part of it already opened the OMS's job. */
export async function openedRun(db: Queryable, subscription: string, snapshotId: string): Promise<unknown> {
  const { rows } = await db.query<{ response: unknown }>(
    "select response from stock_sync.job_runs where subscription = $1 and snapshot_id = $2",
    [subscription, snapshotId],
  );
  return rows[0]?.response;
}

export async function saveOpenedRun(
  db: Queryable,
  subscription: string,
  snapshotId: string,
  response: unknown,
  now: Date,
) {
  await db.query(
    `insert into stock_sync.job_runs (subscription, snapshot_id, response, opened_at) values ($1, $2, $3::jsonb, $4)
     on conflict (subscription, snapshot_id) do update set response = excluded.response, opened_at = excluded.opened_at`,
    [subscription, snapshotId, JSON.stringify(response ?? null), now],
  );
}

/** Per subscription, the records its OMS rejected in the parts of its last run with a finished job. */
export async function lastRejected(db: Queryable): Promise<{ subscription: string; n: number }[]> {
  const { rows } = await db.query<{ subscription: string; n: number }>(
    `with last as (select distinct on (subscription) subscription, snapshot_id from stock_sync.jobs
                   where phase in ('done', 'failed') order by subscription, updated_at desc, delivery_id desc)
     select j.subscription, sum(j.rejected_count)::int as n
     from stock_sync.jobs j join last l on l.subscription = j.subscription and l.snapshot_id is not distinct from j.snapshot_id
     where j.phase in ('done', 'failed') group by j.subscription`,
  );
  return rows;
}

/**
 * A request of the job (open, send, close, a poll) answered at the latest at `answeredBy` (on the
 * database's clock, outbox/answer.ts): the next holder of a rate-limited subscription counts it in
 * its window (recentAnswers), as it counts attempts. The same statement drops the subscription's
 * rows older than its window (`keepMs`, plus the minute recentAnswers looks further back), so the
 * table holds about a window's requests per subscription.
 */
export async function recordJobRequest(
  db: Queryable,
  subscription: string,
  answeredBy: Date,
  keepMs: number,
) {
  await db.query(
    `with pruned as (
       delete from stock_sync.job_requests
       where subscription = $1 and answered_by < now() - $3 * interval '1 millisecond' - interval '1 minute')
     insert into stock_sync.job_requests (subscription, answered_by) values ($1, $2)`,
    [subscription, answeredBy, keepMs],
  );
}
