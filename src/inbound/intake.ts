import type { Db, Queryable } from "../db/db.js";
import { isDatabaseUnavailable } from "../http/errors.js";
import type { Logger } from "../log.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { answers, type Intake, planBatch, type Received } from "./batch.js";
import { type CoalescerStats, createCoalescer } from "../db/coalesce.js";
import { insertEvents } from "./queries.js";

export type { Intake, Received } from "./batch.js";

export type IntakeDeps = {
  db: Db;
  log: Logger;
  subscriptions: readonly Subscription[];
  /** Called with the size of each batch written (a metric). */
  onBatch?: (size: number) => void;
};

export type Intaker = {
  /** Stores an event and fans it out; resolves once its batch has committed. */
  intake(received: Received): Promise<Intake>;
  stats(): CoalescerStats;
};

// 500 events of a few KB make one statement of a few MB; the byte cap keeps large bodies from
// making one of hundreds.
const MAX_BATCH = 500;
const MAX_BATCH_BYTES = 8 << 20;

/**
 * Group commit: events that arrive while a batch is being written are stored together in the
 * next one, each batch in ONE statement (inbox + outbox, or nothing), and each request is
 * answered after its batch commits. The inbox insert is what makes intake idempotent: a copy
 * in the same batch is answered as a duplicate, and a copy racing in another process waits on
 * the primary key and then finds one, so an event is stored and delivered once.
 */
export function createIntake(deps: IntakeDeps): Intaker {
  const coalescer = createCoalescer<Received, Intake>((batch) => writeBatch(deps, batch), {
    maxBatch: MAX_BATCH,
    maxWeight: MAX_BATCH_BYTES,
    weigh: (r) => r.payload.body.length,
  });
  return { intake: coalescer.submit, stats: coalescer.stats };
}

/**
 * A batch that fails for any reason but an unreachable database is written again one event at
 * a time, so an event that cannot be stored fails only its own request, not its neighbours'.
 */
async function writeBatch(deps: IntakeDeps, batch: Received[]): Promise<PromiseSettledResult<Intake>[]> {
  deps.onBatch?.(batch.length);
  try {
    return (await write(deps, batch)).map((value) => ({ status: "fulfilled", value }));
  } catch (err) {
    if (batch.length === 1 || isDatabaseUnavailable(err)) throw err;
    deps.log.warn({ err, events: batch.length }, "inbound batch failed: writing its events one by one");
    const results: PromiseSettledResult<Intake>[] = [];
    for (const one of batch) {
      results.push(
        await write(deps, [one]).then(
          ([value]) => ({ status: "fulfilled", value: value! }) as const,
          (reason: unknown) => ({ status: "rejected", reason }) as const,
        ),
      );
    }
    return results;
  }
}

async function write(deps: IntakeDeps, batch: readonly Received[]): Promise<Intake[]> {
  const plan = planBatch(deps.subscriptions, batch);
  return answers(plan, await insertEvents(deps.db, plan.rows));
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
