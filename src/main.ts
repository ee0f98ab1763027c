import { fileURLToPath } from "node:url";
import type { Config } from "./config/index.js";
import type { Db } from "./db/db.js";
import { migrate } from "./db/migrate.js";
import { openStateDb } from "./db/open.js";
import { openPostgres } from "./db/pg.js";
import { createHttpServer, type HttpServer } from "./http/server.js";
import { join } from "node:path";
import { createExporter, type Exporter } from "./export/exporter.js";
import type { ExportDeps } from "./export/run.js";
import { captureInstalled, captureSql } from "./inventory/capture.js";
import { seedDemoSource } from "./inventory/seed.js";
import { startSimulator } from "./inventory/simulator.js";
import { type Scheduler, startScheduler } from "./scheduler/scheduler.js";
import type { Logger } from "./log.js";
import { createMetrics } from "./metrics/metrics.js";
import { createDeliveryEngine, type DeliveryEngine } from "./outbox/engine.js";
import { syncSubscriptions } from "./outbox/queries.js";
import { createSender } from "./outbox/send.js";
import { buildSubscriptions, type Subscription } from "./subscriptions/subscriptions.js";
import { systemClock } from "./clock.js";

export const FIXTURES_DIR = fileURLToPath(new URL("../fixtures/inventory/", import.meta.url));

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
      if (config.stock.capture.mode === "triggers" && !(await captureInstalled(db))) {
        await db.query(captureSql(config.stock.capture.tables));
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

export type Running = {
  app: App;
  http: HttpServer;
  engine: DeliveryEngine;
  exporter: Exporter;
  scheduler: Scheduler;
  url: string;
  stop(): Promise<void>;
};

/** `stock-sync start`: everything in one process: delivery, the stock schedule, the HTTP server. */
export async function startConnector(config: Config, log: Logger): Promise<Running> {
  const app = await openApp(config, log);
  const sender = createSender({ smtp: config.notifications.smtp });
  const metrics = createMetrics({ db: app.db, clock: systemClock, log });
  const engine = createDeliveryEngine(
    {
      db: app.db,
      clock: systemClock,
      log: log.child({ component: "delivery" }),
      sender,
      onAttempt: metrics.observeAttempt,
    },
    {
      subscriptions: app.subscriptions,
      pollIntervalMs: config.delivery.poll_interval,
      leaseMs: config.delivery.lease,
      shutdownGraceMs: config.delivery.shutdown_grace,
      retentionMs: config.delivery.retention,
      notifyMinIntervalMs: config.notifications.min_interval,
    },
  );
  const http = createHttpServer({
    db: app.db,
    log,
    config,
    subscriptions: app.subscriptions,
    metrics,
    clock: systemClock,
  });
  const exporter = createExporter(exportDeps(app));
  let url: string;
  let scheduler: Scheduler;
  try {
    await engine.start();
    url = await http.listen({ host: config.server.host, port: config.server.port });
    scheduler = await startScheduler(
      { db: app.db, clock: systemClock, log: log.child({ component: "scheduler" }), exporter },
      config.stock,
    );
  } catch (err) {
    await http.close();
    await engine.stop();
    await sender.close();
    await app.close();
    throw err;
  }
  const stopSimulator =
    config.stock.simulator.enabled && !config.source.url
      ? startSimulator(app.db, log.child({ component: "simulator" }), {
          intervalMs: config.stock.simulator.interval,
          changes: config.stock.simulator.changes,
        })
      : () => undefined;
  log.info({ url, database: app.db.kind }, "stock-sync started");
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      // Stop taking requests and ticks, let a stock run and in-flight deliveries finish, release leases.
      stopSimulator();
      await scheduler.stop();
      await exporter.idle();
      await http.close();
      await engine.stop();
      await sender.close();
      await app.close();
      log.info("stock-sync stopped");
    })();
    return stopping;
  };
  return { app, http, engine, exporter, scheduler, url, stop };
}
