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
import { authorize, registerAdmin } from "./admin.js";
import { createAuthThrottle } from "./auth-throttle.js";
import { clientErrorHandler, installErrorHandlers } from "./errors.js";
import { registerOps } from "./ops.js";
import { lazyRequestLogger } from "./request-log.js";
import { stockStatus } from "../export/status.js";
import { fullOverdueAfterMs as fullOverdueAfter } from "../scheduler/full-due.js";
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
    // and a request's own logger is made only if it logs a line (most never do)
    childLoggerFactory: lazyRequestLogger,
    clientErrorHandler,
    // A slow or silent client must not hold a connection (and its buffered body) for ever.
    requestTimeout: LIMITS.requestMs,
    connectionTimeout: LIMITS.idleMs,
    keepAliveTimeout: LIMITS.keepAliveMs,
    http: { headersTimeout: LIMITS.headersMs, connectionsCheckingInterval: LIMITS.checkEveryMs },
  });
  app.server.maxConnections = LIMITS.maxConnections;
  installErrorHandlers(app, log);
  // (hooks that run on every request take a callback: an async one costs a promise each time)
  app.addHook("onSend", (_req, reply, payload, done) => {
    // nothing here is meant to be framed or content-sniffed (clickjacking the /status buttons)
    reply.headers(SECURITY_HEADERS);
    done(null, payload);
  });
  const throttle = createAuthThrottle(log);
  const adminToken = deps.config.server.admin_token;
  if (!isLoopback(deps.config.server.host)) {
    // Reachable from other hosts (for the OMS's webhooks): what the ops pages tell is for the
    // operator only, so they take the admin token like the admin API (disabled without one).
    app.addHook("onRequest", (req, _reply, done) => {
      try {
        if (isOpsRead(req.method, req.url)) authorize(req, adminToken, throttle, deps.clock);
      } catch (err) {
        return done(err as Error);
      }
      done();
    });
  }

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
  const fullOverdueAfterMs = fullOverdueAfter(deps.config.stock);
  registerOps(app, { db, clock, metrics, stockStatus: () => stockStatus(db, next, { fullOverdueAfterMs }) });
  registerStatusPage(app, {
    db,
    clock,
    subscriptions: deps.subscriptions,
    adminToken,
    throttle,
    next,
    fullOverdueAfterMs,
  });
  registerAdmin(app, { db, clock, adminToken, throttle });
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

/** Bounds for slow clients (issue 18 §4); the body limit is server.inbound.max_body. */
export const LIMITS = {
  /** Headers must arrive within this. */
  headersMs: 10_000,
  /** The whole request (headers and body) must arrive within this. */
  requestMs: 30_000,
  /** A connection with no traffic at all is closed after this. */
  idleMs: 30_000,
  /** An idle keep-alive connection is closed after this. */
  keepAliveMs: 5_000,
  /** How often node looks for requests past their time. */
  checkEveryMs: 1_000,
  /** Connections beyond this are refused at once (each may hold up to max_body). */
  maxConnections: 2048,
};

const SECURITY_HEADERS = Object.freeze({
  "x-frame-options": "DENY",
  "content-security-policy": "frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
});

const isLoopback = (host: string) =>
  /^(?:127\.\d+\.\d+\.\d+|::1|localhost|::ffff:127\.\d+\.\d+\.\d+)$/i.test(host);

/** The read-only ops pages: /status, /api/status, /metrics (form posts carry the token themselves). */
function isOpsRead(method: string, url: string): boolean {
  const path = url.split("?")[0]!;
  return (
    (method === "GET" || method === "HEAD") &&
    (path === "/status" || path === "/api/status" || path === "/metrics")
  );
}
