import type { Clock } from "../../src/clock.js";
import { systemClock } from "../../src/clock.js";
import type { Config } from "../../src/config/index.js";
import type { Db } from "../../src/db/db.js";
import { createHttpServer, type HttpServer } from "../../src/http/server.js";
import { createMetrics, type Metrics } from "../../src/metrics/metrics.js";
import { syncSubscriptions } from "../../src/outbox/queries.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { quietLog } from "./engine.js";

export type TestServer = {
  url: string;
  app: HttpServer;
  metrics: Metrics;
  /** POST to the inbound path (or `path`) with the given body and headers. */
  post(body: string | Buffer, headers: Record<string, string>, path?: string): Promise<Response>;
  close(): Promise<void>;
};

/**
 * The connector's real HTTP server on 127.0.0.1, port 0, over `db` with the config's
 * subscriptions (their status rows created, as `start` does).
 */
export async function startServer(
  db: Db,
  config: Config,
  extra: { clock?: Clock; scheduleNext?: () => { full: Date | null; delta: Date | null } } = {},
): Promise<TestServer> {
  const subscriptions = buildSubscriptions(config);
  await syncSubscriptions(
    db,
    subscriptions.map((s) => ({ name: s.name, status: s.status })),
  );
  const clock = extra.clock ?? systemClock;
  const metrics = createMetrics({ db, clock, log: quietLog }, { defaultMetrics: true });
  const app = createHttpServer({
    db,
    log: quietLog,
    config,
    subscriptions,
    metrics,
    clock,
    scheduleNext: extra.scheduleNext,
  });
  const url = await app.listen({ port: 0, host: "127.0.0.1" });
  return {
    url,
    app,
    metrics,
    post: (body, headers, path = config.server.inbound.path) =>
      fetch(url + path, { method: "POST", body, headers }),
    close: () => app.close(),
  };
}

/** Rows in a stock_sync table (the inbox, messages, deliveries). */
export async function countRows(db: Db, table: "inbox" | "messages" | "deliveries"): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`select count(*)::int as n from stock_sync.${table}`);
  return rows[0]!.n;
}
