import { join } from "node:path";
import { systemClock } from "./clock.js";
import type { Config } from "./config/index.js";
import type { Db } from "./db/db.js";
import { migrate } from "./db/migrate.js";
import { openStateDb } from "./db/open.js";
import { openPostgres } from "./db/pg.js";
import type { ExportDeps } from "./export/run.js";
import { captureProblems, installCapture } from "./inventory/capture-catalog.js";
import { seedDemoSource } from "./inventory/seed.js";
import type { Logger } from "./log.js";
import { syncSubscriptions } from "./outbox/queries.js";
import { fromRoot } from "./root.js";
import { buildSubscriptions, type Subscription } from "./subscriptions/subscriptions.js";

export const FIXTURES_DIR = fromRoot("fixtures/inventory/");

/** What every command needs: the config, a logger, the state database (migrated) and the source. */
export type App = {
  config: Config;
  log: Logger;
  db: Db;
  source: Db;
  /** Configured subscriptions plus the internal notification targets. */
  subscriptions: Subscription[];
  close(): Promise<void>;
};

export async function openApp(config: Config, log: Logger, opts: { migrate?: boolean } = {}): Promise<App> {
  const db = await openStateDb(config.database, (err) => log.warn({ err }, "state database connection lost"));
  try {
    if (opts.migrate !== false) {
      const { applied } = await migrate(db);
      if (applied.length) log.info({ applied }, "state schema migrated");
    }
    const subscriptions = buildSubscriptions(config);
    await syncSubscriptions(
      db,
      subscriptions.map((s) => ({ name: s.name, status: s.status })),
    );
    const source = config.source.url ? openPostgres(config.source.url, { poolSize: 4 }) : db;
    if (!config.source.url) {
      // No source configured: the demo inventory lives beside the state, seeded on first start.
      const { seeded, counts } = await seedDemoSource(db, { fixturesDir: FIXTURES_DIR });
      if (seeded) log.info({ counts }, "demo inventory loaded from fixtures/");
      // The demo source is ours: install its change capture (a real source gets `source install`).
      // Also re-installed when broken (an older release's install, a dropped trigger).
      const { capture } = config.stock;
      const opts = { enableAlways: capture.enable_always };
      if (capture.mode === "triggers" && (await captureProblems(db, capture.tables, opts)).length) {
        await installCapture(db, capture);
      }
    }
    return {
      config,
      log,
      db,
      source,
      subscriptions,
      async close() {
        if (source !== db) await source.close();
        await db.close();
      },
    };
  } catch (err) {
    await db.close().catch(() => undefined);
    throw err;
  }
}

/** What the stock export needs from an open app. */
export function exportDeps(app: App): ExportDeps {
  return {
    db: app.db,
    source: app.source,
    clock: systemClock,
    log: app.log.child({ component: "stock" }),
    subscriptions: app.subscriptions,
    stock: app.config.stock,
    tmpDir: join(app.config.database.data_dir, "tmp"),
    notifyMinIntervalMs: app.config.notifications.min_interval,
  };
}
