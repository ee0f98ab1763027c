import type { Config } from "./config/index.js";
import { createHttpServer, type HttpServer } from "./http/server.js";
import { createExporter, type Exporter } from "./export/exporter.js";
import { startSimulator } from "./inventory/simulator.js";
import { notifyFullNotRun } from "./scheduler/notify.js";
import { type Scheduler, startScheduler } from "./scheduler/scheduler.js";
import { gateOutages, type Logger, outageGate, sayOutage } from "./log.js";
import { isDatabaseUnavailable } from "./http/errors.js";
import { purgeDelivered } from "./outbox/retention.js";
import { createMetrics } from "./metrics/metrics.js";
import { createDeliveryEngine, type DeliveryEngine } from "./outbox/engine.js";
import { createSender } from "./outbox/send.js";
import { type App, exportDeps, openApp } from "./app.js";
import { systemClock } from "./clock.js";
import { loadFormats } from "./formats/registry.js";
import { buildSubscriptions } from "./subscriptions/subscriptions.js";

const OUTAGE_REMINDER_MS = 60_000;
const OUTAGE_PROBE_MS = 2_000;

export type Running = {
  app: App;
  http: HttpServer;
  engine: DeliveryEngine;
  exporter: Exporter;
  scheduler: Scheduler;
  url: string;
  stop(): Promise<void>;
  /** Re-reads the subscriptions' code map files (SIGHUP); the maps in use stay on an error. */
  reloadMaps(): Promise<void>;
};

/** `stock-sync start`: everything in one process: delivery, the stock schedule, the HTTP server. */
export async function startConnector(config: Config, rootLog: Logger): Promise<Running> {
  // Every worker, poll and request meets a state database outage: log it once, a reminder a
  // minute, and the recovery, which a probe notices (issue 17.14).
  const outage = outageGate(OUTAGE_REMINDER_MS);
  const now = () => systemClock.now().getTime();
  const log = gateOutages(rootLog, outage, { isOutage: isDatabaseUnavailable, now });
  // map files are read before anything opens: an unreadable one refuses the start (exit 2)
  const formats = await loadFormats(buildSubscriptions(config), { partRows: config.stock.format.part_rows });
  const app = await openApp(config, log, { loadDemo: true });
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
    scheduleNext: () => scheduler?.next() ?? { full: null, delta: null },
  });
  // The stock metrics are read from stock_runs when scraped (shared by every process).
  const stockDeps = exportDeps(app, formats);
  const exporter = createExporter(stockDeps);
  let url: string;
  let scheduler: Scheduler | undefined;
  try {
    await engine.start();
    url = await http.listen({ host: config.server.host, port: config.server.port });
    scheduler = await startScheduler(
      {
        db: app.db,
        clock: systemClock,
        log: log.child({ component: "scheduler" }),
        exporter,
        notify: (detail) => notifyFullNotRun(stockDeps, detail),
      },
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
    config.stock.simulator.enabled && app.demo === "loaded"
      ? startSimulator(app.db, log.child({ component: "simulator" }), {
          intervalMs: config.stock.simulator.interval,
          changes: config.stock.simulator.changes,
        })
      : () => undefined;
  // The first purge now, not a purge interval after start: a process restarted more often than
  // that would otherwise never purge (issue 17.16).
  void purgeDelivered(app.db, systemClock.now(), config.delivery.retention).catch((err) =>
    log.warn({ err }, "retention purge failed"),
  );
  const probe = setInterval(() => {
    if (!outage.down) return;
    app.db.query("select 1").then(
      () => {
        const news = outage.recovered(now());
        if (news) sayOutage(rootLog, news);
      },
      (err) => {
        const news = outage.failed(now());
        if (news) sayOutage(rootLog, news, err);
      },
    );
  }, OUTAGE_PROBE_MS).unref();
  log.info({ url, database: app.db.kind }, "stock-sync started");
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      // Stop taking requests and ticks, let a stock run and in-flight deliveries finish, release leases.
      stopSimulator();
      clearInterval(probe);
      await scheduler?.stop();
      await exporter.idle();
      await http.close();
      await engine.stop();
      await sender.close();
      await app.close();
      log.info("stock-sync stopped");
    })();
    return stopping;
  };
  const reloadMaps = async () => {
    await formats.reload();
    log.info("code maps re-read");
  };
  return { app, http, engine, exporter, scheduler, url, stop, reloadMaps };
}
