import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { runDelta } from "./delta.js";
import { holdLock, releaseLock, takeLock } from "./lock.js";
import type { ExportDeps, RunOptions, RunResult } from "./run.js";
import { runFull } from "./snapshot.js";
import { fullSentSince, lastFullAt, type RunKind } from "./state.js";

/** Why a run did not start: this process is busy, another holds the stock lock, or a due full was sent already. */
export type Skipped = {
  kind: RunKind;
  status: "skipped";
  reason: "busy" | "locked" | "done";
  detail: string;
};

export type ExporterOptions = {
  /** How long a stock lock lasts without renewal (renewed every quarter of it). @default 120_000 */
  lockMs?: number;
};

/**
 * One stock run at a time: in this process (a tick arriving while a run is busy is skipped) and
 * across processes (a lease row, renewed while the run lasts), so a full and a delta never
 * interleave their reads of the sent state. The lease is judged on the database's clock; a
 * renewal that finds it taken over is logged and fails the run, and the run's state transaction
 * re-checks ownership first (fence, lock.ts), so a run that stalled past its lease never commits.
 */
export function createExporter(deps: ExportDeps, opts: ExporterOptions = {}) {
  const owner = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  const lockMs = opts.lockMs ?? 120_000;
  let busy: RunKind | null = null;
  let current: Promise<unknown> = Promise.resolve();

  function run(kind: RunKind, opts: RunOptions): Promise<RunResult | Skipped> {
    if (busy)
      return Promise.resolve({
        kind,
        status: "skipped",
        reason: "busy",
        detail: `a ${busy} run is in progress in this process`,
      });
    busy = kind;
    const running = exclusive(kind, opts);
    current = running.catch(() => undefined);
    return running;
  }

  async function exclusive(kind: RunKind, opts: RunOptions): Promise<RunResult | Skipped> {
    try {
      // --out and --dry-run change no state, so they need no lock.
      const stateful = !opts.out && !opts.dryRun;
      if (!stateful) return await runKind(kind, opts);
      if (!(await takeLock(deps.db, owner, lockMs))) {
        return {
          kind,
          status: "skipped",
          reason: "locked",
          detail: "another process is running a stock export",
        };
      }
      const lease = holdLock(deps, owner, lockMs);
      try {
        const sent =
          (opts.unlessFullSince && (await fullSentSince(deps.db, opts.unlessFullSince))) ||
          (opts.unlessFullWithinMs !== undefined && (await fullWithin(deps, opts.unlessFullWithinMs)));
        if (sent) {
          return { kind, status: "skipped", reason: "done", detail: "a full was enqueued meanwhile" };
        }
        return await runKind(kind, { ...opts, fence: lease.fence });
      } finally {
        lease.stop();
        await releaseLock(deps.db, owner).catch(() => undefined);
      }
    } finally {
      busy = null;
    }
  }

  async function runKind(kind: RunKind, opts: RunOptions): Promise<RunResult> {
    const result = kind === "full" ? await runFull(deps, opts) : await runDelta(deps, opts);
    deps.log.info({ ...result }, `stock ${kind}: ${result.status}`);
    return result;
  }

  return {
    run,
    busy: () => busy,
    /** Resolves when the run in progress (if any) has finished. */
    idle: () => current.then(() => undefined),
  };
}

export type Exporter = ReturnType<typeof createExporter>;

async function fullWithin(deps: ExportDeps, ms: number): Promise<boolean> {
  const last = await lastFullAt(deps.db);
  return last !== null && deps.clock.now().getTime() - last.getTime() <= ms;
}
