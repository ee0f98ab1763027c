/**
 * Read-only operations endpoints (SPEC §8): `/metrics` for Prometheus and `/api/status` for
 * tools. Open like /healthz on a loopback listener, behind the admin token on a public one
 * (server.ts); neither shows a secret (errors and details pass through redactString).
 */
import type { FastifyInstance } from "fastify";
import type { Clock } from "../clock.js";
import type { Db } from "../db/db.js";
import { inboxStatus } from "../inbound/intake.js";
import type { Metrics } from "../metrics/metrics.js";
import { subscriptionOverview } from "../outbox/status.js";
import { cached, redactDetails, STATUS_CACHE_MS } from "./ops-cache.js";

export type OpsDeps = {
  db: Db;
  clock: Clock;
  metrics: Pick<Metrics, "scrape">;
  /**
   * The stock export's part of /api/status (last full and delta runs); the export passes it in
   * when it is wired, and `stock` is null until then.
   */
  stockStatus?: () => Promise<unknown>;
};

export function registerOps(app: FastifyInstance, deps: OpsDeps): void {
  app.get("/metrics", async (_req, reply) => {
    const { contentType, body } = await deps.metrics.scrape();
    return reply.type(contentType).send(body);
  });

  const status = cached(STATUS_CACHE_MS, deps.clock, async () => {
    const now = deps.clock.now();
    const [subscriptions, inbound, stock] = await Promise.all([
      subscriptionOverview(deps.db, now),
      inboxStatus(deps.db, now),
      deps.stockStatus ? deps.stockStatus() : null,
    ]);
    return redactDetails({ at: now, subscriptions, inbound, stock });
  });
  app.get("/api/status", () => status());
}
