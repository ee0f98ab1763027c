import { existsSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { systemClock } from "./clock.js";
import { type Config, usesDemoSource } from "./config/index.js";
import type { Db } from "./db/db.js";
import { migrate } from "./db/migrate.js";
import { openStateDb } from "./db/open.js";
import { openPostgres } from "./db/pg.js";
import type { ExportDeps } from "./export/run.js";
import type { Formats } from "./formats/registry.js";
import { captureProblems, installCapture } from "./inventory/capture-catalog.js";
import { ConnectorError } from "./errors.js";
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
  /** "missing": the source is the demo inventory and this (read-only) command did not load it. */
  demo: "none" | "loaded" | "missing";
  close(): Promise<void>;
};

export type OpenOptions = {
  migrate?: boolean;
  /**
   * Only commands that run the connector or send stock (start, snapshot, delta) load the demo
   * inventory when the config uses it; read-only ones never write demo data. @default false
   */
  loadDemo?: boolean;
  /**
   * Read-only commands refuse to create an embedded database where there is none: a relative
   * data_dir run from another directory would otherwise answer from a fresh, empty one. @default true
   */
  create?: boolean;
};

export async function openApp(config: Config, log: Logger, opts: OpenOptions = {}): Promise<App> {
  if (opts.create === false) requireEmbeddedDb(config);
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
    const demo = usesDemoSource(config) ? await prepareDemo(config, log, db, opts.loadDemo === true) : "none";
    return {
      config,
      log,
      db,
      source,
      subscriptions,
      demo,
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

/** The demo inventory lives beside the state: loaded on the first writing command, else only looked for. */
async function prepareDemo(
  config: Config,
  log: Logger,
  db: Db,
  load: boolean,
): Promise<"loaded" | "missing"> {
  // Loaded only for the demo source: it brings csv-parse, which a real source never needs.
  const { demoSourceExists, seedDemoSource } = await import("./inventory/seed.js");
  if (!load) return (await demoSourceExists(db)) ? "loaded" : "missing";
  const { seeded, counts } = await seedDemoSource(db, { fixturesDir: FIXTURES_DIR });
  if (seeded) log.info({ counts }, "demo inventory loaded from fixtures/");
  // The demo source is ours: install its change capture (a real source gets `source install`).
  // Also re-installed when broken (an older release's install, a dropped trigger).
  const { capture } = config.stock;
  const opts = { enableAlways: capture.enable_always };
  if (capture.mode === "triggers" && (await captureProblems(db, capture.tables, opts)).length) {
    await installCapture(db, capture);
  }
  return "loaded";
}

/** Throws unless data_dir holds an embedded database (or a real database.url is configured). */
function requireEmbeddedDb(config: Config): void {
  if (config.database.url) return;
  const dir = resolve(config.database.data_dir);
  if (existsSync(join(dir, "pgdata", "PG_VERSION"))) return;
  const relative = isAbsolute(config.database.data_dir)
    ? ""
    : ` (data_dir "${config.database.data_dir}" is relative to the working directory ${process.cwd()})`;
  throw new ConnectorError(
    "NOT_AVAILABLE",
    `no embedded database in ${dir}${relative}; this command does not create one: run it where the config expects, or start the connector first`,
  );
}

/** What the stock export needs from an open app. */
export function exportDeps(app: App, formats?: Formats): ExportDeps {
  return {
    db: app.db,
    source: app.source,
    clock: systemClock,
    log: app.log.child({ component: "stock" }),
    subscriptions: app.subscriptions,
    stock: app.config.stock,
    tmpDir: join(app.config.database.data_dir, "tmp"),
    notifyMinIntervalMs: app.config.notifications.min_interval,
    statePoolSize: app.config.database.pool_size,
    ...(formats ? { formats } : {}),
  };
}
