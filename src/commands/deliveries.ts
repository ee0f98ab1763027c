import type { Queryable } from "../db/db.js";
import { deliveryStatuses, listDeliveries, replay, setSubscriptionStatus } from "../outbox/admin.js";
import { describeDelivery, describeRejected, runLabel, stockStatus } from "../export/status.js";
import { fullOverdueAfterMs } from "../scheduler/full-due.js";
import { subscriptionOverview } from "../outbox/status.js";
import { ConnectorError } from "../errors.js";
import { openApp, type App } from "../app.js";
import type { Config } from "../config/index.js";
import { nextFireTimes } from "../scheduler/next.js";
import { buildSubscriptions } from "../subscriptions/subscriptions.js";
import { type CommandContext, configAndLog } from "./context.js";
import { deliveryDetail, formatDetail } from "./delivery-detail.js";
import { table, when } from "./format.js";

/**
 * Opens the app (state database, reached through the running connector when embedded), runs fn,
 * closes. These commands never create an embedded database nor load the demo inventory.
 */
async function withApp<T>(
  ctx: CommandContext,
  fn: (app: App) => Promise<T>,
  opts: { subscription?: string | undefined } = {},
): Promise<T> {
  const { config, log } = await configAndLog(ctx);
  if (opts.subscription !== undefined) requireSubscription(config, opts.subscription);
  const app = await openApp(config, log, { create: false });
  try {
    return await fn(app);
  } finally {
    await app.close();
  }
}

/** A name the config does not know is exit 1 (NOT_FOUND) for every command that takes one. */
function requireSubscription(config: Config, name: string): void {
  if (!buildSubscriptions(config).some((s) => s.name === name)) {
    throw new ConnectorError("NOT_FOUND", `no subscription named "${name}" in the config`);
  }
}

export function statusCommand(ctx: CommandContext, opts: { json?: boolean }) {
  return withApp(ctx, async (app) => {
    const subs = await subscriptionOverview(
      app.db,
      new Date(),
      app.subscriptions.map((s) => s.name),
    );
    // No scheduler runs here: the next runs are the config's schedules (the running connector's too).
    const stock = await stockStatus(app.db, () => nextFireTimes(app.config.stock), {
      fullOverdueAfterMs: fullOverdueAfterMs(app.config.stock),
    });
    if (opts.json)
      return void ctx.stdout.write(`${JSON.stringify({ subscriptions: subs, stock }, null, 2)}\n`);
    ctx.stdout.write(
      table(
        ["SUBSCRIPTION", "STATE", "BACKLOG", "DEAD", "OK/1H", "FAIL/1H", "LAST SUCCESS", "LAST ERROR"],
        subs.map((s) => [
          s.name,
          s.status,
          s.backlog,
          s.dead,
          s.delivered_last_hour,
          s.failed_last_hour,
          when(s.last_success_at),
          s.last_error ? `${s.last_error} (${when(s.last_failure_at)})` : "-",
        ]),
        ctx.stdout,
      ),
    );
    ctx.stdout.write(
      `\n${table(
        ["STOCK RUN", "STATUS", "WHEN", "ROWS", "PARTS", "SECONDS", "DELIVERED", "DETAIL"],
        [stock.last_full, stock.last_delta_sent, stock.last_delta]
          .map((r, i) => [["last full", "last delta sent", "last delta"][i]!, r] as const)
          .map(([label, r]) => [
            label,
            r ? runLabel(r) : "none yet",
            when(r?.finished_at ?? r?.started_at),
            r?.rows ?? "-",
            r?.parts ?? "-",
            r?.duration_ms != null ? (r.duration_ms / 1000).toFixed(1) : "-",
            r?.delivery.length ? describeDelivery(r.delivery) : "-",
            r?.detail ?? "",
          ]),
        ctx.stdout,
      )}`,
    );
    // what the OMS refused in these runs' import jobs (issue 15), the first few per subscription
    for (const [label, r] of [
      ["last full", stock.last_full],
      ["last delta sent", stock.last_delta_sent],
    ] as const)
      for (const line of describeRejected(r?.delivery ?? [])) ctx.stdout.write(`\n${label}: ${line}`);
    if ([stock.last_full, stock.last_delta_sent].some((r) => describeRejected(r?.delivery ?? []).length))
      ctx.stdout.write("\n");
    if (stock.full_overdue)
      ctx.stdout.write(
        `\nFULL OVERDUE: the last successful full snapshot ${stock.last_successful_full_at ? `started ${when(stock.last_successful_full_at)}` : "never ran"} (full overdue)\n`,
      );
  });
}

export function pauseCommand(ctx: CommandContext, name: string, status: "enabled" | "paused") {
  return withApp(
    ctx,
    async (app) => {
      const r = await setSubscriptionStatus(
        app.db,
        name,
        status,
        new Date(),
        status === "paused" ? "paused by CLI" : "resumed by CLI",
      );
      const verb = status === "paused" ? "paused (its messages are kept)" : "resumed";
      ctx.stdout.write(`${name}: ${verb}; was ${r.previous}\n`);
    },
    { subscription: name },
  );
}

export function deliveriesCommand(
  ctx: CommandContext,
  opts: { status?: string; subscription?: string; json?: boolean; limit?: string; id?: string },
) {
  return withApp(
    ctx,
    async (app) => {
      if (opts.id) {
        const detail = await deliveryDetail(app.db, opts.id);
        const text = opts.json ? `${JSON.stringify(detail, null, 2)}\n` : formatDetail(detail, ctx.stdout);
        return void ctx.stdout.write(text);
      }
      const rows = await listDeliveries(app.db, { ...opts, limit: opts.limit ? Number(opts.limit) : 100 });
      if (opts.json) return void ctx.stdout.write(`${JSON.stringify(rows, null, 2)}\n`);
      ctx.stdout.write(
        table(
          ["ID", "WEBHOOK-ID", "SUBSCRIPTION", "SUBJECT", "STATUS", "ATTEMPTS", "CREATED", "LAST ERROR"],
          rows.map((d) => [
            d.id,
            d.message_id,
            d.subscription,
            d.subject,
            d.status,
            d.attempts,
            when(d.created_at),
            d.last_error ?? "-",
          ]),
          ctx.stdout,
        ),
      );
    },
    { subscription: opts.subscription },
  );
}

export function replayCommand(
  ctx: CommandContext,
  ids: string[],
  opts: { subscription?: string; since?: string; until?: string; force?: boolean },
) {
  // Usage is checked before the database is opened.
  const sel = ids.length ? { ids } : rangeSelection(opts);
  return withApp(
    ctx,
    async (app) => {
      const replayed = await replay(app.db, sel, new Date(), { force: opts.force });
      // As the API: an id that names nothing, or nothing dead or failed, is an error (exit 1),
      // not "replayed 0" with exit 0.
      if ("ids" in sel && replayed.length === 0) await explainNothingReplayed(app.db, sel.ids);
      ctx.stdout.write(
        `replayed ${replayed.length} deliver${replayed.length === 1 ? "y" : "ies"}${replayed.length ? `: ${replayed.map((r) => r.id).join(", ")}` : " (only dead or failed ones are replayed)"}\n`,
      );
    },
    { subscription: "subscription" in sel ? sel.subscription : undefined },
  );
}

function rangeSelection(opts: { subscription?: string; since?: string; until?: string }) {
  if (!opts.subscription || !opts.since) {
    throw new ConnectorError(
      "CONFIG_INVALID",
      "replay: give delivery or webhook ids, or --subscription NAME --since TIME",
    );
  }
  return {
    subscription: opts.subscription,
    since: parseTime("--since", opts.since),
    until: opts.until ? parseTime("--until", opts.until) : undefined,
  };
}

function parseTime(flag: string, value: string): Date {
  const d = new Date(value);
  if (Number.isNaN(d.getTime()))
    throw new ConnectorError(
      "CONFIG_INVALID",
      `${flag}: expected a time like 2026-11-28T10:00:00Z, got "${value}"`,
    );
  return d;
}

async function explainNothingReplayed(db: Queryable, ids: readonly string[]): Promise<never> {
  const statuses: string[] = [];
  for (const id of ids) {
    const found = await deliveryStatuses(db, id);
    if (found.length === 0) throw new ConnectorError("NOT_FOUND", `no delivery or message with id "${id}"`);
    statuses.push(...found);
  }
  throw new ConnectorError(
    "NOT_FOUND",
    `only dead or failed deliveries are replayed; ${ids.length === 1 ? "this one is" : "these are"} ${[...new Set(statuses)].join(", ")}`,
  );
}
