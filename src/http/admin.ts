/**
 * The admin API (SPEC §8), behind `Authorization: Bearer <server.admin_token>`:
 * pause/resume a subscription, list deliveries, replay one. With no token configured every
 * endpoint here answers 403 `admin_disabled`, reads included: delivery listings carry receiver
 * errors, and an unauthenticated reader is what the missing token means to rule out.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { FastifyInstance, FastifyRequest } from "fastify";
import type { Clock } from "../clock.js";
import type { Db } from "../db/db.js";
import { deliveryStatuses, listDeliveries, replay, setSubscriptionStatus } from "../outbox/admin.js";
import type { AuthThrottle } from "./auth-throttle.js";
import { HttpError } from "./errors.js";

export type AdminDeps = { db: Db; clock: Clock; adminToken: string; throttle: AuthThrottle };

const MAX_LIMIT = 1000;

export function registerAdmin(app: FastifyInstance, deps: AdminDeps): void {
  void app.register(async (scope) => {
    // onRequest: a refused caller's body is never read
    scope.addHook("onRequest", async (req) => authorize(req, deps.adminToken, deps.throttle, deps.clock));

    for (const action of ["pause", "resume"] as const) {
      scope.post<{ Params: { name: string } }>(`/api/subscriptions/:name/${action}`, async (req) => {
        const status = action === "pause" ? "paused" : "enabled";
        return setSubscriptionStatus(
          deps.db,
          req.params.name,
          status,
          deps.clock.now(),
          `${action}d via API`,
        );
      });
    }

    scope.get<{ Querystring: Record<string, unknown> }>("/api/deliveries", async (req) => {
      const status = queryText(req.query, "status");
      const subscription = queryText(req.query, "subscription");
      const limit = parseLimit(queryText(req.query, "limit"));
      return { deliveries: await listDeliveries(deps.db, { status, subscription, limit }) };
    });

    scope.post<{ Params: { id: string }; Querystring: Record<string, unknown> }>(
      "/api/deliveries/:id/replay",
      async (req) => {
        const { id } = req.params;
        // ?force=true replays stock older than stock already delivered (409 stale_stock without it)
        const force = parseFlag(queryText(req.query, "force"), "force");
        const replayed = await replay(deps.db, { ids: [id] }, deps.clock.now(), { force });
        if (replayed.length > 0) return { replayed };
        const statuses = await deliveryStatuses(deps.db, id);
        if (statuses.length === 0)
          throw new HttpError(404, "not_found", `no delivery or message with id "${id}"`);
        throw new HttpError(
          409,
          "not_replayable",
          `only dead or failed deliveries are replayed; this one is ${statuses.join(", ")}`,
        );
      },
    );
  });
}

/** Lets a request with the admin token through; anything else is 401 (counted), 403 or 429. */
export function authorize(req: FastifyRequest, token: string, throttle: AuthThrottle, clock: Clock): void {
  if (token === "") {
    throw new HttpError(403, "admin_disabled", "the admin API is disabled: server.admin_token is not set");
  }
  const now = clock.now().getTime();
  throttle.check(req.ip, now);
  const given = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "")?.[1];
  if (given === undefined || !sameSecret(given, token)) {
    throttle.fail(req.ip, now, `${req.method} ${req.routeOptions.url ?? "?"}`);
    throw new HttpError(401, "unauthorized", "a valid Authorization: Bearer <admin token> is required", {
      "www-authenticate": 'Bearer realm="stock-sync"',
    });
  }
}

/** Hashing first gives equal lengths, so the comparison time says nothing about the token. */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** One value of a query parameter; `?status=a&status=b` is a mistake, not a filter. */
function queryText(query: Record<string, unknown>, name: string): string | undefined {
  const value = query[name];
  if (value === undefined || typeof value === "string") return value;
  throw new HttpError(400, "invalid_input", `${name}: expected a single value`);
}

function parseFlag(text: string | undefined, name: string): boolean {
  if (text === undefined || text === "false") return false;
  if (text === "true" || text === "") return true;
  throw new HttpError(400, "invalid_input", `${name}: expected true or false`);
}

function parseLimit(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = /^\d{1,7}$/.test(text) ? Number(text) : Number.NaN;
  if (!(n >= 1 && n <= MAX_LIMIT)) {
    throw new HttpError(400, "invalid_input", `limit: expected a whole number from 1 to ${MAX_LIMIT}`);
  }
  return n;
}
