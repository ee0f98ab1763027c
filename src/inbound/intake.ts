import type { Db, Queryable } from "../db/db.js";
import { isDatabaseUnavailable } from "../http/errors.js";
import type { Logger } from "../log.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { answers, type Intake, planBatch, type Received } from "./batch.js";
import { type CoalescerStats, createCoalescer } from "../db/coalesce.js";
import { createCommitOrder, type Turn } from "../db/commit-order.js";
import { insertEvents } from "./queries.js";

export type { Intake, Received } from "./batch.js";

/**
 * A committed batch's time (ms). One batch in flight: `write`, its statement and commit in one
 * round trip. Two: `ids_wait` (for the previous batch's statement), `begin`, `statement`,
 * `commit_wait` (for the previous batch's commit), `commit`.
 */
export type BatchPhases = Readonly<Record<string, number>>;

export type IntakeDeps = {
  db: Db;
  log: Logger;
  subscriptions: readonly Subscription[];
  /** Called with the size of each batch written (a metric). */
  onBatch?: (size: number) => void;
  /** Called with where a batch's time went (ms by phase, a metric), once it has committed. */
  onWritten?: (phases: BatchPhases) => void;
  /** Batches written at once, 1 or 2 (server.inbound.batches_in_flight). @default 1 */
  inFlight?: number;
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
 *
 * With `batches_in_flight: 2`, two batches are in flight (#16: 50 senders each waiting for
 * their 202 made intake latency bound, one batch's statement and commit after the other; the
 * default stays 1, which measured faster on this machine). They overlap but never reorder:
 * a batch's statement goes after the previous batch's has taken its delivery ids, and its commit
 * after the previous batch's commit (db/commit-order.ts), so ids follow the order of arrival and
 * a fifo worker, reading the lowest owed id it can see, can never see a later batch first.
 */
export function createIntake(deps: IntakeDeps): Intaker {
  const limits = {
    maxBatch: MAX_BATCH,
    maxWeight: MAX_BATCH_BYTES,
    weigh: (r: Received) => r.payload.body.length,
  };
  if ((deps.inFlight ?? 1) < 2) {
    // one at a time: each batch is one statement, committed on its own (one round trip)
    const coalescer = createCoalescer<Received, Intake>(
      (batch) => writeBatch(deps, batch, undefined),
      limits,
    );
    return { intake: coalescer.submit, stats: coalescer.stats };
  }
  const order = createCommitOrder();
  // Batches whose statement has not taken its ids yet. The next batch is taken only when there
  // is none: it could not start before anyway, and what arrives meanwhile joins it (taken at
  // once, it would hold one or two events and cost a commit of its own).
  let assigning = 0;
  const coalescer = createCoalescer<Received, Intake>(
    (batch) => {
      assigning++;
      return writeBatch(
        deps,
        batch,
        started(order.next(), () => {
          assigning--;
          coalescer.poke();
        }),
      );
    },
    { ...limits, inFlight: 2, mayOverlap: () => assigning === 0 },
  );
  return { intake: coalescer.submit, stats: coalescer.stats };
}

/** The turn, calling `onAssigned` once when its ids are taken (or it gives up). */
function started(turn: Turn, onAssigned: () => void): Turn {
  let pending = true;
  const once = () => {
    if (pending) {
      pending = false;
      onAssigned();
    }
  };
  return {
    previous: turn.previous,
    assigned() {
      turn.assigned();
      once();
    },
    committed() {
      turn.committed();
      once();
    },
  };
}

/**
 * A batch that fails for any reason but an unreachable database is written again one event at
 * a time, so an event that cannot be stored fails only its own request, not its neighbours'.
 * Those writes commit one by one: with a turn (two batches in flight) they wait until the batch
 * before is committed, and the next batch waits for them.
 */
async function writeBatch(
  deps: IntakeDeps,
  batch: Received[],
  turn: Turn | undefined,
): Promise<PromiseSettledResult<Intake>[]> {
  deps.onBatch?.(batch.length);
  try {
    const written = turn ? await writeInTurn(deps, batch, turn) : await writeAlone(deps, batch, true);
    return written.map((value) => ({ status: "fulfilled", value }));
  } catch (err) {
    if (batch.length === 1 || isDatabaseUnavailable(err)) throw err;
    deps.log.warn({ err, events: batch.length }, "inbound batch failed: writing its events one by one");
    await turn?.previous.committed;
    const results: PromiseSettledResult<Intake>[] = [];
    for (const one of batch) {
      results.push(
        await writeAlone(deps, [one]).then(
          ([value]) => ({ status: "fulfilled", value: value! }) as const,
          (reason: unknown) => ({ status: "rejected", reason }) as const,
        ),
      );
    }
    return results;
  } finally {
    turn?.committed();
  }
}

/** The batch in its turn: ids after the previous batch's, committed after it. */
async function writeInTurn(deps: IntakeDeps, batch: readonly Received[], turn: Turn): Promise<Intake[]> {
  const plan = planBatch(deps.subscriptions, batch);
  const at = [performance.now()];
  // (already so when the batch was taken: the guard stays, before the transaction, not in it:
  // the embedded database runs one transaction at a time, and the previous batch may still need
  // it for its events one by one)
  await turn.previous.assigned;
  at.push(performance.now());
  const inserted = await deps.db.tx(async (tx) => {
    at.push(performance.now());
    const ids = await insertEvents(tx, plan.rows);
    at.push(performance.now());
    turn.assigned();
    await turn.previous.committed;
    at.push(performance.now());
    return ids;
  });
  at.push(performance.now());
  const [ids_wait, begin, statement, commit_wait, commit] = at.slice(1).map((t, i) => t - at[i]!);
  deps.onWritten?.({
    ids_wait: ids_wait!,
    begin: begin!,
    statement: statement!,
    commit_wait: commit_wait!,
    commit: commit!,
  });
  return answers(plan, inserted);
}

/** A batch (or one event of a failed one) in one statement, committed on its own. */
async function writeAlone(deps: IntakeDeps, batch: readonly Received[], timed = false): Promise<Intake[]> {
  const plan = planBatch(deps.subscriptions, batch);
  const start = performance.now();
  const inserted = await insertEvents(deps.db, plan.rows);
  if (timed) deps.onWritten?.({ write: performance.now() - start });
  return answers(plan, inserted);
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
