import type { Clock } from "../clock.js";
import { redactString } from "../config/redact.js";
import type { Db } from "../db/db.js";
import { isDatabaseUnavailable } from "../http/errors.js";
import type { Logger } from "../log.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { type AttemptRecord, recordOutcomes, recordSuccesses, recordSuccessGroups } from "./outcome.js";
import { decide } from "./retry.js";

export type RecordDeps = {
  db: Db;
  clock: Clock;
  log: Logger;
  random: () => number;
  all: readonly Subscription[];
  notifyMinIntervalMs: number;
  /** The process that made the attempts: outcomes are written only while it holds the lease. */
  owner?: string;
  /** Attempts whose outcome was not written (no longer owed, or the lease moved). */
  onFenced?: (deliveryIds: number[]) => void;
};

/** What became of one attempt's record: the subscriptions to wake, and the outcome written. */
export type Recorded = { wake: string[]; outcome: string };

// Recording is retried briefly when the database is away or the transaction lost a race; other
// errors are the data's, and retrying them changes nothing.
const RECORD_RETRIES_MS = [100, 500, 1500];
const TRANSIENT_CODES = new Set(["40001", "40P01", "55P03", "57014"]);

const isTransient = (err: unknown) =>
  isDatabaseUnavailable(err) || TRANSIENT_CODES.has(String((err as { code?: unknown } | null)?.code));

async function withRetries<T>(fn: () => Promise<T>): Promise<T> {
  for (const delay of RECORD_RETRIES_MS) {
    try {
      return await fn();
    } catch (err) {
      if (!isTransient(err)) throw err;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
  return fn();
}

/**
 * Records the attempts of one subscription that finished together. The whole batch in one write
 * (one statement when all were delivered); if that fails for a reason of its own (not an
 * unreachable database), each attempt alone, so one bad outcome neither blocks nor loses the
 * others; and an attempt that still cannot be recorded is recorded as what it is, an attempt
 * error (status, metrics, log, and the retry schedule), never left owed to be sent again at once.
 * Throws only when the database cannot be written at all: the worker then backs off.
 */
export async function recordBatch(
  deps: RecordDeps,
  sub: Subscription,
  attempts: readonly AttemptRecord[],
): Promise<Recorded[]> {
  const recs = attempts.map((r) => forTarget(deps, sub, r));
  let batchError: unknown;
  try {
    const wake = await writeAll(deps, sub, recs);
    return recs.map((r, i) => ({ wake: i === 0 ? wake : [], outcome: r.decision.kind }));
  } catch (err) {
    if (isTransient(err)) throw err;
    batchError = err;
  }
  if (recs.length === 1) return [await asError(deps, sub, recs[0]!, batchError)];
  deps.log.warn(
    { err: batchError, subscription: sub.name, attempts: recs.length },
    "outcome batch failed: recording its attempts one by one",
  );
  const results: Recorded[] = [];
  for (const rec of recs) {
    try {
      results.push({ wake: await writeAll(deps, sub, [rec]), outcome: rec.decision.kind });
    } catch (err) {
      if (isTransient(err)) throw err;
      results.push(await asError(deps, sub, rec, err));
    }
  }
  return results;
}

/** One subscription's finished attempts, with who hears of those the fence dropped. */
export type RecordGroup = {
  sub: Subscription;
  recs: readonly AttemptRecord[];
  onFenced?: (deliveryIds: number[]) => void;
};

/**
 * Records the attempts of several subscriptions that finished together (the engine's shared
 * batch): the subscriptions whose attempts were all delivered, and are not failing, in one
 * statement between them (#16: twenty busy subscriptions then cost what one does); every other
 * group as `recordBatch` records it, each in its own transaction, side by side. One result per
 * group: a group fails alone (its worker backs off), never another's.
 */
export async function recordGroups(
  deps: RecordDeps,
  groups: readonly RecordGroup[],
): Promise<PromiseSettledResult<Recorded[]>[]> {
  const written = new Set<RecordGroup>();
  const delivered = groups.filter((g) => g.recs.every((r) => r.decision.kind === "delivered"));
  // (one group alone: recordBatch takes the same one-statement path)
  if (delivered.length > 1) {
    try {
      const results = await withRetries(() =>
        recordSuccessGroups(
          deps.db,
          delivered.map((g) => ({ subscription: g.sub.name, recs: g.recs })),
          { now: deps.clock.now(), owner: deps.owner },
        ),
      );
      results.forEach((r, i) => {
        if (!r.ok) return; // failing or missing: recorded below, with its effects
        written.add(delivered[i]!);
        if (r.fenced.length) delivered[i]!.onFenced?.(r.fenced);
      });
    } catch (err) {
      if (isTransient(err)) return groups.map(() => ({ status: "rejected", reason: err }));
      // a reason of one group's own: each group alone below, so it fails alone
    }
  }
  return Promise.allSettled(
    groups.map(async (g) =>
      written.has(g)
        ? g.recs.map((r) => ({ wake: [], outcome: r.decision.kind }))
        : recordBatch({ ...deps, onFenced: g.onFenced }, g.sub, g.recs),
    ),
  );
}

/** A notification target cannot be deactivated: a 410 there ends the message (dead), not a loop. */
function forTarget(deps: RecordDeps, sub: Subscription, rec: AttemptRecord): AttemptRecord {
  if (!sub.internal || rec.decision.kind !== "gone") return rec;
  deps.log.warn(
    { subscription: sub.name, delivery: rec.deliveryId },
    "notification target answered 410 Gone: the notification is dead",
  );
  return { ...rec, decision: { kind: "dead" } };
}

async function writeAll(
  deps: RecordDeps,
  sub: Subscription,
  recs: readonly AttemptRecord[],
): Promise<string[]> {
  const { db, clock } = deps;
  if (recs.every((r) => r.decision.kind === "delivered")) {
    const ctx = { subscription: sub, now: clock.now(), owner: deps.owner, onFenced: deps.onFenced };
    if (await withRetries(() => recordSuccesses(db, recs, ctx))) return [];
  }
  return withRetries(() =>
    db.tx((tx) =>
      recordOutcomes(tx, recs, {
        subscription: sub,
        all: deps.all,
        now: clock.now(),
        notifyMinIntervalMs: deps.notifyMinIntervalMs,
        owner: deps.owner,
        onFenced: deps.onFenced,
      }),
    ),
  );
}

/** Records an attempt whose outcome could not be written as an attempt error instead. */
async function asError(
  deps: RecordDeps,
  sub: Subscription,
  rec: AttemptRecord,
  err: unknown,
): Promise<Recorded> {
  const replacement = await asAttemptError(deps, sub, rec, err);
  if (!replacement) return { wake: [], outcome: rec.decision.kind };
  deps.log.error(
    { err, subscription: sub.name, delivery: rec.deliveryId, outcome: rec.decision.kind },
    "attempt outcome could not be recorded: recorded as an attempt error",
  );
  return { wake: await writeAll(deps, sub, [replacement]), outcome: replacement.decision.kind };
}

/**
 * The attempt as an error of its own (no reply kept), on the subscription's retry schedule;
 * null when its delivery no longer exists (purged: nothing is owed).
 */
async function asAttemptError(
  deps: RecordDeps,
  sub: Subscription,
  rec: AttemptRecord,
  err: unknown,
): Promise<AttemptRecord | null> {
  const { rows } = await withRetries(() =>
    deps.db.query<{ attempts: number }>("select attempts from stock_sync.deliveries where id = $1", [
      rec.deliveryId,
    ]),
  );
  if (!rows[0]) return null;
  const what = rec.result.kind === "response" ? `HTTP ${rec.result.status}` : rec.result.errorClass;
  const reason = redactString(err instanceof Error ? err.message : String(err));
  const result = {
    kind: "error",
    errorClass: "other",
    message: `the outcome (${what}) could not be recorded: ${reason}`.slice(0, 500),
  } as const;
  const decidedAt = deps.clock.now();
  const decision = decide(result, rows[0].attempts + 1, sub.retry_intervals, decidedAt, deps.random);
  return { ...rec, result, responseBody: null, decision, decidedAt };
}
