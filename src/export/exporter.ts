import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Queryable } from "../db/db.js";
import { runDelta } from "./delta.js";
import type { ExportDeps, RunOptions, RunResult } from "./run.js";
import { runFull } from "./snapshot.js";
import { lastFullAt, type RunKind } from "./state.js";

export type Skipped = { kind: RunKind; status: "skipped"; detail: string };

const LOCK_MS = 120_000;

/**
 * One stock run at a time: in this process (a tick arriving while a run is busy is skipped) and
 * across processes (a lease row, renewed while the run lasts), so a full and a delta never
 * interleave their reads of the sent state.
 */
export function createExporter(deps: ExportDeps) {
  const owner = `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}`;
  let busy: RunKind | null = null;
  let current: Promise<unknown> = Promise.resolve();

  function run(kind: RunKind, opts: RunOptions): Promise<RunResult | Skipped> {
    if (busy)
      return Promise.resolve({
        kind,
        status: "skipped",
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
      if (stateful && !(await takeLock(deps.db, owner, deps.clock.now()))) {
        return { kind, status: "skipped", detail: "another process is running a stock export" };
      }
      const renew = stateful
        ? setInterval(
            () => void takeLock(deps.db, owner, deps.clock.now()).catch(() => undefined),
            LOCK_MS / 4,
          )
        : undefined;
      try {
        if (opts.unlessFullWithinMs !== undefined && (await fullWithin(deps, opts.unlessFullWithinMs))) {
          return { kind, status: "skipped", detail: "a full was enqueued meanwhile" };
        }
        const result = kind === "full" ? await runFull(deps, opts) : await runDelta(deps, opts);
        deps.log.info({ ...result }, `stock ${kind}: ${result.status}`);
        return result;
      } finally {
        clearInterval(renew);
        if (stateful) await releaseLock(deps.db, owner).catch(() => undefined);
      }
    } finally {
      busy = null;
    }
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

async function takeLock(db: Queryable, owner: string, now: Date): Promise<boolean> {
  const { rowCount } = await db.query(
    `update stock_sync.stock_lock set owner = $1, until = $2::timestamptz + $3 * interval '1 millisecond'
     where id and (owner is null or owner = $1 or until < $2)`,
    [owner, now, LOCK_MS],
  );
  return rowCount === 1;
}

const releaseLock = (db: Queryable, owner: string) =>
  db.query("update stock_sync.stock_lock set owner = null, until = null where owner = $1", [owner]);
