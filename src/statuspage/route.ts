import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Clock } from "../clock.js";
import type { Db } from "../db/db.js";
import { sameSecret } from "../http/admin.js";
import type { AuthThrottle } from "../http/auth-throttle.js";
import { cached, redactDetails, STATUS_CACHE_MS } from "../http/ops-cache.js";
import { replay, setSubscriptionStatus } from "../outbox/admin.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { statusPageData } from "./data.js";
import { renderStatusPage } from "./page.js";

export type StatusPageDeps = {
  db: Db;
  clock: Clock;
  subscriptions: readonly Subscription[];
  adminToken: string;
  throttle: AuthThrottle;
  next?: () => { full: Date | null; delta: Date | null };
  /** When the last successful full is older than this, the page says "full overdue". */
  fullOverdueAfterMs?: number;
};

/**
 * `?done=` after a form action: a code mapped to a fixed text, naming only a configured
 * subscription or a delivery number, so a crafted link cannot put words on the page.
 */
function doneMessage(
  query: Record<string, unknown>,
  subscriptions: readonly Subscription[],
): string | undefined {
  const { done, name, id } = query;
  const sub = typeof name === "string" && subscriptions.some((s) => s.name === name) ? name : undefined;
  const delivery = typeof id === "string" && /^\d{1,18}$/.test(id) ? id : undefined;
  if ((done === "paused" || done === "resumed") && sub) return `${sub}: ${done}`;
  if (done === "replayed" && delivery) return `delivery ${delivery} replayed`;
  if (done === "not_replayable" && delivery) return `delivery ${delivery} was not dead or failed`;
  return undefined;
}

/**
 * GET /status (HTML for people) and its form actions. The forms post the admin token as a field,
 * so pause, resume and replay work with JavaScript off; with it on, the page calls /api/* instead.
 */
export function registerStatusPage(app: FastifyInstance, deps: StatusPageDeps): void {
  const adminEnabled = deps.adminToken !== "";
  const data = cached(STATUS_CACHE_MS, deps.clock, async () =>
    redactDetails(
      await statusPageData(deps.db, deps.subscriptions, {
        now: deps.clock.now(),
        adminEnabled,
        next: deps.next,
        fullOverdueAfterMs: deps.fullOverdueAfterMs,
      }),
    ),
  );
  app.get("/status", async (req, reply) => {
    const flash = doneMessage(req.query as Record<string, unknown>, deps.subscriptions);
    return reply
      .header("content-type", "text/html; charset=utf-8")
      .header("cache-control", "no-store")
      .send(renderStatusPage(await data(), flash));
  });

  void app.register(async (forms) => {
    forms.addContentTypeParser(
      "application/x-www-form-urlencoded",
      { parseAs: "string", bodyLimit: 4096 },
      (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(String(body)))),
    );
    const authorized = (req: FastifyRequest) => {
      const now = deps.clock.now().getTime();
      deps.throttle.check(req.ip, now);
      const token = (req.body as { token?: unknown } | undefined)?.token;
      const ok = adminEnabled && typeof token === "string" && sameSecret(token, deps.adminToken);
      if (!ok && adminEnabled) deps.throttle.fail(req.ip, now, `POST ${req.routeOptions.url ?? "/status"}`);
      return ok;
    };
    const back = (done: string, params: Record<string, string>) =>
      `/status?${new URLSearchParams({ done, ...params })}`;

    forms.post<{ Params: { name: string; action: string } }>(
      "/status/subscriptions/:name/:action",
      async (req, reply) => {
        if (!authorized(req)) return reply.code(401).type("text/plain").send("admin token refused");
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
        return reply.redirect(back(`${action}d`, { name }), 303);
      },
    );

    forms.post<{ Params: { id: string } }>("/status/deliveries/:id/replay", async (req, reply) => {
      if (!authorized(req)) return reply.code(401).type("text/plain").send("admin token refused");
      if (!/^\d+$/.test(req.params.id)) return reply.code(404).type("text/plain").send("no such delivery");
      const done = await replay(deps.db, { ids: [req.params.id] }, deps.clock.now());
      return reply.redirect(back(done.length ? "replayed" : "not_replayable", { id: req.params.id }), 303);
    });
  });
}
