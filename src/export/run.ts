import { randomBytes } from "node:crypto";
import type { Clock } from "../clock.js";
import type { Config } from "../config/index.js";
import type { Db, Queryable, Tx } from "../db/db.js";
import type { Logger } from "../log.js";
import type { Formats } from "../formats/registry.js";
import { sharedSubscriptions } from "../formats/run.js";
import { enqueue, targetsOf } from "../outbox/enqueue.js";
import { matchesAny } from "../subscriptions/subjects.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import type { Phases } from "./phases.js";
import { finishRun, type RunKind, type RunStatus } from "./state.js";

/** Everything a stock run needs, passed in. */
export type ExportDeps = {
  db: Db;
  source: Db;
  clock: Clock;
  log: Logger;
  subscriptions: readonly Subscription[];
  stock: Config["stock"];
  /** Where a full snapshot's part files wait between reading the source and enqueueing. */
  tmpDir: string;
  notifyMinIntervalMs: number;
  /**
   * The state database's pool size (PostgreSQL): with room to spare, a full holds one connection
   * through its read to load the sent state meanwhile (sent-load.ts). Absent: it does not.
   */
  statePoolSize?: number;
  /** Per-subscription bodies and code maps (src/formats/); loaded on first use when absent. */
  formats?: Formats;
};

export type RunOptions = {
  /** schedule | start | cli | api: recorded with the run. */
  trigger: string;
  /** Override the shrink guard (export/guard.ts). */
  force?: boolean;
  /** Compute and report; enqueue nothing, change no state. */
  dryRun?: boolean;
  /** Write the CSV here instead of enqueueing (changes no state). */
  out?: NodeJS.WritableStream;
  /** With `out`: write the bodies this subscription would receive instead. */
  subscription?: string;
  /**
   * Only when no full that started at or after this time was enqueued, checked once the run
   * holds the stock lock: a due full that another process (or an earlier try) already sent is
   * not sent twice.
   */
  unlessFullSince?: Date;
  /** Only when no full was enqueued (finished) within this many ms, likewise checked under the lock. */
  unlessFullWithinMs?: number;
  onProgress?: (rows: number) => void;
  /**
   * Set by the exporter for a run that holds the stock lock: the state transaction calls it
   * first, and it throws when the lock was lost (lock.ts).
   */
  fence?: (tx: Queryable) => Promise<void>;
};

export type RunResult = {
  kind: RunKind;
  status: RunStatus | "written";
  runId: number | null;
  snapshotId: string;
  rows: number;
  parts: number;
  durationMs: number;
  detail?: string;
  /** Where the time went, phase by phase (ms): a full's read, enqueue, sent state, commit. */
  phases?: Phases;
};

export const newSnapshotId = (kind: RunKind, now: Date) =>
  `${kind}-${now.toISOString().replace(/[-:.]/g, "").slice(0, 15)}-${randomBytes(3).toString("hex")}`;

/** The source's snapshot (its first statement fixes a repeatable-read transaction's view) and clock. */
export async function readSourceSnapshot(tx: Queryable): Promise<{ snapshot: string; now: Date }> {
  const { rows } = await tx.query<{ snapshot: string; now: Date }>(
    "select pg_current_snapshot()::text as snapshot, now() as now",
  );
  return rows[0]!;
}

/** A read-only transaction on one consistent snapshot of the source. */
export const inSourceSnapshot = <T>(source: Db, fn: (tx: Tx) => Promise<T>) =>
  source.tx(fn, { isolation: "repeatable read", readOnly: true });

export const stockSubscriptions = (subs: readonly Subscription[], subject: string) =>
  subs.filter((s) => matchesAny(s.subjects, subject)).map((s) => s.name);

export type Part = { body: Buffer; rows: number };

/** Enqueues a run's parts in order: each is one message with the stock headers (SPEC §5). */
export async function enqueueParts(
  tx: Queryable,
  deps: ExportDeps,
  run: { kind: RunKind; snapshotId: string; runId: number; now: Date },
  parts: readonly (() => Promise<Buffer>)[],
): Promise<string[]> {
  const woken = new Set<string>();
  // subscriptions with their own body get their own messages (formats/enqueue.ts)
  const shared = await sharedSubscriptions(deps);
  if (!targetsOf(shared, { subject: `stock.${run.kind}` }).length) return [];
  for (const [i, body] of parts.entries()) {
    const { subscriptions } = await enqueue(tx, shared, {
      subject: `stock.${run.kind}`,
      payload: await body(),
      contentType: "text/csv",
      headers: {
        "stock-sync-kind": run.kind,
        "stock-sync-snapshot-id": run.snapshotId,
        "stock-sync-part": `${i + 1}/${parts.length}`,
        ...(deps.stock.format.gzip ? { "content-encoding": "gzip" } : {}),
      },
      sequenced: true,
      runId: run.runId,
      createdAt: run.now,
    });
    for (const s of subscriptions) woken.add(s);
  }
  return [...woken];
}

/** A run whose state transaction failed is recorded as failed (with the reason), then rethrown. */
export async function recordFailure<T>(deps: ExportDeps, runId: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    await finishRun(deps.db, runId, {
      status: "failed",
      now: deps.clock.now(),
      detail: String((err as Error).message ?? err),
    }).catch(() => undefined);
    throw err;
  }
}
