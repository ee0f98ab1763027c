import type { RunCoordinator } from "node-cron";
import type { Queryable } from "../db/db.js";

/**
 * node-cron's run coordinator on the state database: the first process to insert a fire's key
 * runs it; every other process sees the key taken and skips. Keys older than a day are pruned.
 */
export function pgRunCoordinator(db: Queryable, owner: string, now: () => Date): RunCoordinator {
  return {
    async shouldRun(key) {
      const at = now();
      const { rowCount } = await db.query(
        "insert into stock_sync.cron_runs (key, claimed_by, claimed_at) values ($1, $2, $3) on conflict (key) do nothing",
        [key, owner, at],
      );
      await db.query(
        "delete from stock_sync.cron_runs where claimed_at < $1::timestamptz - interval '1 day'",
        [at],
      );
      return rowCount === 1;
    },
  };
}
