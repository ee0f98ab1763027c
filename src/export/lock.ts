import type { Queryable } from "../db/db.js";
import { ConnectorError } from "../errors.js";
import type { ExportDeps } from "./run.js";

/**
 * The stock lock (migration 0003's one-row `stock_lock`): a lease with an owner and an expiry,
 * both judged on the database's clock (`now()`), never a process's, so a skewed clock can
 * neither steal a live lease nor keep a dead one.
 */

/**
 * Takes the lock when it is free or expired (or already ours). Skip locked: while a run's
 * state transaction holds the row (its fence), the lock is busy, and nobody queues behind it.
 */
export async function takeLock(db: Queryable, owner: string, lockMs: number): Promise<boolean> {
  const { rowCount } = await db.query(
    `update stock_sync.stock_lock set owner = $1, until = now() + $2 * interval '1 millisecond'
     where id = (select id from stock_sync.stock_lock
                 where id and (owner is null or owner = $1 or until < now()) for update skip locked)`,
    [owner, lockMs],
  );
  return rowCount === 1;
}

/** Extends our lease; false when someone else owns it now (or nobody: it lapsed and was freed). */
async function renewLock(db: Queryable, owner: string, lockMs: number): Promise<boolean> {
  const { rowCount } = await db.query(
    "update stock_sync.stock_lock set until = now() + $2 * interval '1 millisecond' where id and owner = $1",
    [owner, lockMs],
  );
  return rowCount === 1;
}

export const releaseLock = (db: Queryable, owner: string) =>
  db.query("update stock_sync.stock_lock set owner = null, until = null where owner = $1", [owner]);

/**
 * While a run holds the lock: renews it every quarter of its length, and gives the run a fence
 * for its state transaction. The fence fails once a renewal found the lock lost; otherwise it
 * re-checks ownership in the transaction and keeps the lock row locked until commit, so nobody
 * can take the lock over between the check and the commit (they wait, then find it ours).
 */
export function holdLock(deps: Pick<ExportDeps, "db" | "log">, owner: string, lockMs: number) {
  let lost: string | null = null;
  let renewing = false;
  let stopped = false;
  const timer = setInterval(() => {
    if (renewing || lost) return;
    renewing = true;
    renewLock(deps.db, owner, lockMs)
      .then((ok) => {
        if (ok || stopped) return; // a renewal that ends after the release finds nothing: fine
        lost = "a renewal found it taken over (the run stalled past its lease)";
        deps.log.warn({ owner }, "stock lock lost: this run will not commit");
      })
      .catch((err) => deps.log.warn({ err }, "stock lock not renewed; retrying"))
      .finally(() => (renewing = false));
  }, lockMs / 4);
  return {
    async fence(tx: Queryable): Promise<void> {
      if (lost) throw lockLost(lost);
      const { rows } = await tx.query<{ owner: string | null }>(
        "select owner from stock_sync.stock_lock where id for update",
      );
      const holder = rows[0]?.owner ?? null;
      if (holder !== owner) throw lockLost(`it is now held by ${holder ?? "nobody"}`);
    },
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}

const lockLost = (why: string) =>
  new ConnectorError("NOT_AVAILABLE", `lost the stock lock before committing (${why}); nothing was sent`);
