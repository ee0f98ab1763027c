// Without vitest: bench/delta.ts builds its exporter with it too (stock.ts registers hooks).
import { systemClock } from "../../src/clock.js";
import type { Config } from "../../src/config/index.js";
import type { Db } from "../../src/db/db.js";
import type { ExportDeps } from "../../src/export/run.js";
import { syncSubscriptions } from "../../src/outbox/queries.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { quietLog } from "./engine.js";

/**
 * What an exporter over `db` (source = state) needs, with the config's subscriptions created in
 * the state database as `start` creates them.
 */
export async function exportDeps(db: Db, config: Config, tmpDir: string): Promise<ExportDeps> {
  const subscriptions = buildSubscriptions(config);
  await syncSubscriptions(
    db,
    subscriptions.map((s) => ({ name: s.name, status: s.status })),
  );
  return {
    db,
    source: db,
    clock: systemClock,
    log: quietLog,
    subscriptions,
    stock: config.stock,
    tmpDir,
    notifyMinIntervalMs: config.notifications.min_interval,
    // as the product's: on PostgreSQL a full loads the sent state while reading (sent-load.ts)
    statePoolSize: 5,
  };
}
