import { type Coalescer, createCoalescer } from "../db/coalesce.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import type { AttemptRecord } from "./outcome.js";
import {
  type DueAnswer,
  type DueRequest,
  dueForSubscriptions,
  mayAttempt,
  subscriptionStatuses,
} from "./queries.js";
import { type Recorded, type RecordDeps, recordGroups } from "./record.js";

/**
 * The statements every subscription's worker makes, shared by all the workers of one engine:
 * status reads, reads of the backlog, last checks before a request, and outcome records each go
 * through one group commit (db/coalesce.ts), so twenty busy subscriptions make about as many
 * statements as one (#16: each with its own made 0.9 statements per message, and the PostgreSQL
 * round trips, not the HTTP, filled the two cores). Per subscription nothing changes: the same
 * checks, the same fenced writes, its outcomes in the order they finished.
 */
export type SharedBatches = {
  /** The subscription's status as stored now (undefined: no row). */
  status(name: string): Promise<string | undefined>;
  /**
   * Its status, what may start now and when the next delivery is due, read with the backlogs of
   * the other subscriptions that want rows at the same time (queries.ts dueForSubscriptions).
   * For a subscription last found not enabled, its status alone, until that says enabled.
   */
  due(req: DueRequest): Promise<DueAnswer>;
  /** Still owed, enabled, and leased to us for at least `forMs` more (queries.ts mayAttempt). */
  check(deliveryId: number, forMs: number): Promise<boolean>;
  /** Records one finished attempt with the others of its batch (record.ts recordGroups). */
  record(sub: Subscription, rec: AttemptRecord, onFenced: (ids: number[]) => void): Promise<Recorded>;
};

type Check = { id: number; forMs: number };

/**
 * Two outcome batches in flight: the round trip and commit of one hide behind the other's (a
 * quiet run spent 94% of its time waiting on one serial chain of ~15-row records, 5.8 ms each).
 * Only deliveries overlap, and only with deliveries of the same subscription: two sets of
 * successes leave the same rows whichever commits first, while a failure (failure count,
 * deactivation, notifications) waits until every earlier outcome of its subscription is written.
 */
const RECORDS = {
  inFlight: 2,
  mayOverlap: (f: Finished, writing: readonly Finished[]) =>
    f.rec.decision.kind === "delivered" &&
    writing.every((w) => w.sub.name !== f.sub.name || w.rec.decision.kind === "delivered"),
};

type Finished = { sub: Subscription; rec: AttemptRecord; onFenced: (ids: number[]) => void };

export function createSharedBatches(deps: RecordDeps & { owner: string }): SharedBatches {
  const statuses: Coalescer<string, string | undefined> = createCoalescer(async (names) => {
    const found = await subscriptionStatuses(deps.db, [...new Set(names)]);
    return names.map((n) => ({ status: "fulfilled", value: found.get(n) }));
  });
  const dues: Coalescer<DueRequest, DueAnswer> = createCoalescer(async (items) => {
    const answers = await dueForSubscriptions(deps.db, deps.clock.now(), deps.owner, items);
    return answers.map((value) => ({ status: "fulfilled", value }));
  });
  const checks: Coalescer<Check, boolean> = createCoalescer(async (items) => {
    // one query per lease length asked (subscriptions' timeouts): usually one
    const ok = new Set<Check>();
    for (const [forMs, group] of groupBy(items, (c) => c.forMs)) {
      const owed = await mayAttempt(
        deps.db,
        group.map((c) => c.id),
        deps.owner,
        forMs,
      );
      for (const c of group) if (owed.has(c.id)) ok.add(c);
    }
    return items.map((c) => ({ status: "fulfilled", value: ok.has(c) }));
  });
  const records: Coalescer<Finished, Recorded> = createCoalescer(async (items) => {
    const bySub = [...groupBy(items, (f) => f.sub.name).values()];
    const results = await recordGroups(
      deps,
      bySub.map((g) => ({ sub: g[0]!.sub, recs: g.map((f) => f.rec), onFenced: g[0]!.onFenced })),
    );
    const answer = new Map<Finished, PromiseSettledResult<Recorded>>();
    bySub.forEach((g, i) => {
      const r = results[i]!;
      for (const [j, f] of g.entries())
        answer.set(f, r.status === "fulfilled" ? { status: "fulfilled", value: r.value[j]! } : r);
    });
    return items.map((f) => answer.get(f)!);
  }, RECORDS);
  // Subscriptions whose last read found them not enabled (paused, or no row): a wake (every
  // intake batch's notify, every poll) reads their status alone, and the backlog only once it
  // says enabled. A paused subscription's backlog grows with every event while nothing is sent
  // from it; reading it at every wake was most of PostgreSQL's work per inbound event beside the
  // intake's own statement (#16). A resume wakes the worker, which then reads both.
  const notEnabled = new Set<string>();
  async function due(req: DueRequest): Promise<DueAnswer> {
    if (notEnabled.has(req.subscription)) {
      const status = await statuses.submit(req.subscription);
      if (status !== "enabled") return { status, rows: [], nextDueAt: null };
    }
    const answer = await dues.submit(req);
    if (answer.status === "enabled") notEnabled.delete(req.subscription);
    else notEnabled.add(req.subscription);
    return answer;
  }
  return {
    status: (name) => statuses.submit(name),
    due,
    check: (id, forMs) => checks.submit({ id, forMs }),
    record: (sub, rec, onFenced) => records.submit({ sub, rec, onFenced }),
  };
}

/** Items by key, in order of first appearance, each group in submission order. */
function groupBy<T, K>(items: readonly T[], key: (t: T) => K): Map<K, T[]> {
  const groups = new Map<K, T[]>();
  for (const item of items) {
    const k = key(item);
    const g = groups.get(k);
    if (g) g.push(item);
    else groups.set(k, [item]);
  }
  return groups;
}
