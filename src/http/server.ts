import Fastify, { LogController } from "fastify";
import type { Db } from "../db/db.js";
import { migrationsPending } from "../db/migrate.js";
import type { Logger } from "../log.js";

export type HttpDeps = { db: Db; log: Logger };

/** The one HTTP server: operations endpoints now; inbound webhooks and the admin API join it. */
export function createHttpServer(deps: HttpDeps) {
  const app = Fastify({
    loggerInstance: deps.log.child({ component: "http" }),
    // Request lines would drown the log at webhook rates; failures are logged where they happen.
    logController: new LogController({ disableRequestLogging: true }),
  });

  app.get("/healthz", async () => ({ status: "ok" }));

  app.get("/readyz", async (_req, reply) => {
    try {
      const pending = await migrationsPending(deps.db);
      if (pending > 0)
        return reply.code(503).send({ status: "not ready", detail: `${pending} migration(s) pending` });
      return { status: "ready" };
    } catch (err) {
      deps.log.warn({ err }, "readiness check failed");
      return reply.code(503).send({ status: "not ready", detail: "state database unavailable" });
    }
  });

  return app;
}

export type HttpServer = ReturnType<typeof createHttpServer>;
