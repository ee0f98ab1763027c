import type { FastifyInstance } from "fastify";
import type { Clock } from "../clock.js";
import type { Db } from "../db/db.js";
import { sameSecret } from "../http/admin.js";
import { replay, setSubscriptionStatus } from "../outbox/admin.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { statusPageData } from "./data.js";
import { renderStatusPage } from "./page.js";

export type StatusPageDeps = {
  db: Db;
  clock: Clock;
  subscriptions: readonly Subscription[];
  adminToken: string;
  next?: () => { full: Date | null; delta: Date | null };
  /** When the last successful full is older than this, the page says "full overdue". */
  fullOverdueAfterMs?: number;
};

/**
 * GET /status (HTML for people) and its form actions. The forms post the admin token as a field,
 * so pause, resume and replay work with JavaScript off; with it on, the page calls /api/* instead.
 */
export function registerStatusPage(app: FastifyInstance, deps: StatusPageDeps): void {
  const adminEnabled = deps.adminToken !== "";
  app.get("/status", async (req, reply) => {
    const data = await statusPageData(deps.db, deps.subscriptions, {
      now: deps.clock.now(),
      adminEnabled,
      next: deps.next,
      fullOverdueAfterMs: deps.fullOverdueAfterMs,
    });
    const flash = (req.query as Record<string, unknown>).done;
    return reply
      .header("content-type", "text/html; charset=utf-8")
      .header("cache-control", "no-store")
      .send(renderStatusPage(data, typeof flash === "string" ? flash : undefined));
  });

  void app.register(async (forms) => {
    forms.addContentTypeParser(
      "application/x-www-form-urlencoded",
      { parseAs: "string", bodyLimit: 4096 },
      (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(String(body)))),
    );
    const authorized = (body: unknown) => {
      const token = (body as { token?: unknown } | undefined)?.token;
      return adminEnabled && typeof token === "string" && sameSecret(token, deps.adminToken);
    };
    const back = (message: string) => `/status?done=${encodeURIComponent(message)}`;

    forms.post<{ Params: { name: string; action: string } }>(
      "/status/subscriptions/:name/:action",
      async (req, reply) => {
        if (!authorized(req.body)) return reply.code(401).type("text/plain").send("admin token refused");
        const { name, action } = req.params;
        if ((action !== "pause" && action !== "resume") || !deps.subscriptions.some((s) => s.name === name)) {
          return reply.code(404).type("text/plain").send("no such subscription or action");
        }
        await setSubscriptionStatus(
          deps.db,
          name,
          action === "pause" ? "paused" : "enabled",
          deps.clock.now(),
          `${action}d from /status`,
        );
        return reply.redirect(back(`${name}: ${action}d`), 303);
      },
    );

    forms.post<{ Params: { id: string } }>("/status/deliveries/:id/replay", async (req, reply) => {
      if (!authorized(req.body)) return reply.code(401).type("text/plain").send("admin token refused");
      if (!/^\d+$/.test(req.params.id)) return reply.code(404).type("text/plain").send("no such delivery");
      const done = await replay(deps.db, { ids: [req.params.id] }, deps.clock.now());
      return reply.redirect(
        back(
          done.length
            ? `delivery ${req.params.id} replayed`
            : `delivery ${req.params.id} was not dead or failed`,
        ),
        303,
      );
    });
  });
}
