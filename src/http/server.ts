import Fastify, { type FastifyBaseLogger, LogController } from "fastify";
import type { Clock } from "../clock.js";
import type { Config } from "../config/index.js";
import type { Db } from "../db/db.js";
import { migrationsPending } from "../db/migrate.js";
import { registerInbound } from "../inbound/route.js";
import { ONESTOCK_SIGNED } from "../subscriptions/signing.js";
import type { Logger } from "../log.js";
import type { Metrics } from "../metrics/metrics.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { registerAdmin } from "./admin.js";
import { clientErrorHandler, installErrorHandlers } from "./errors.js";
import { registerOps } from "./ops.js";
import { stockStatus } from "../export/status.js";
import { registerStatusPage } from "../statuspage/route.js";

export type HttpDeps = {
  db: Db;
  log: Logger;
  config: Config;
  /** Every subscription the engine runs: inbound events fan out to the matching ones. */
  subscriptions: readonly Subscription[];
  metrics: Metrics;
  clock: Clock;
  /** When the stock schedule fires next (in a process that runs it). */
  scheduleNext?: () => { full: Date | null; delta: Date | null };
};

/**
 * The one HTTP server (SPEC §7, §8): health, inbound webhooks, metrics, status and the admin API.
 * Routes are registered now and loaded on `listen()` or `ready()`.
 */
export function createHttpServer(deps: HttpDeps) {
  const log = deps.log.child({ component: "http" });
  const app = Fastify({
    // typed as fastify's logger so plugins take a plain FastifyInstance
    loggerInstance: log as FastifyBaseLogger,
    // Request lines would drown the log at webhook rates; failures are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
    clientErrorHandler,
  });
  installErrorHandlers(app, log);

  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_req, reply) => {
    try {
      const pending = await migrationsPending(deps.db);
      if (pending > 0)
        return reply.code(503).send({ status: "not ready", detail: `${pending} migration(s) pending` });
      return { status: "ready" };
    } catch (err) {
      log.warn({ err }, "readiness check failed");
      return reply.code(503).send({ status: "not ready", detail: "state database unavailable" });
    }
  });

  const { db, clock, metrics } = deps;
  const next = () => deps.scheduleNext?.() ?? { full: null, delta: null };
  registerOps(app, { db, clock, metrics, stockStatus: () => stockStatus(db, next) });
  registerStatusPage(app, {
    db,
    clock,
    subscriptions: deps.subscriptions,
    adminToken: deps.config.server.admin_token,
    next,
  });
  registerAdmin(app, { db, clock, adminToken: deps.config.server.admin_token });
  registerInbound(app, {
    db,
    log,
    clock,
    metrics,
    settings: deps.config.server.inbound,
    subscriptions: deps.subscriptions,
    onestock: {
      signed: ONESTOCK_SIGNED[deps.config.server.inbound.onestock.signed],
      encoding: deps.config.server.inbound.onestock.encoding,
    },
  });
  return app;
}

export type HttpServer = ReturnType<typeof createHttpServer>;
