import { setSubscriptionStatus, listDeliveries, replay } from "../outbox/admin.js";
import { stockStatus } from "../export/status.js";
import { subscriptionOverview } from "../outbox/status.js";
import { ConnectorError } from "../errors.js";
import { openApp, type App } from "../app.js";
import { type CommandContext, configAndLog } from "./context.js";
import { table, when } from "./format.js";

/** Opens the app (state database, reached through the running connector when embedded), runs fn, closes. */
async function withApp<T>(ctx: CommandContext, fn: (app: App) => Promise<T>): Promise<T> {
  const { config, log } = await configAndLog(ctx);
  const app = await openApp(config, log);
  try {
    return await fn(app);
  } finally {
    await app.close();
  }
}

export function statusCommand(ctx: CommandContext, opts: { json?: boolean }) {
  return withApp(ctx, async (app) => {
    const subs = await subscriptionOverview(
      app.db,
      new Date(),
      app.subscriptions.map((s) => s.name),
    );
    const stock = await stockStatus(app.db);
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
        ["STOCK RUN", "STATUS", "WHEN", "ROWS", "PARTS", "SECONDS", "DETAIL"],
        [stock.last_full, stock.last_delta_sent, stock.last_delta]
          .map((r, i) => [["last full", "last delta sent", "last delta"][i]!, r] as const)
          .map(([label, r]) => [
            label,
            r?.status ?? "none yet",
            when(r?.finished_at ?? r?.started_at),
            r?.rows ?? "-",
            r?.parts ?? "-",
            r?.duration_ms != null ? (r.duration_ms / 1000).toFixed(1) : "-",
            r?.detail ?? "",
          ]),
        ctx.stdout,
      )}`,
    );
  });
}

export function pauseCommand(ctx: CommandContext, name: string, status: "enabled" | "paused") {
  return withApp(ctx, async (app) => {
    if (!app.subscriptions.some((s) => s.name === name)) {
      throw new ConnectorError("NOT_FOUND", `no subscription named "${name}" in the config`);
    }
    const r = await setSubscriptionStatus(
      app.db,
      name,
      status,
      new Date(),
      status === "paused" ? "paused by CLI" : "resumed by CLI",
    );
    const verb = status === "paused" ? "paused (its messages are kept)" : "resumed";
    ctx.stdout.write(`${name}: ${verb}; was ${r.previous}\n`);
  });
}

export function deliveriesCommand(
  ctx: CommandContext,
  opts: { status?: string; subscription?: string; json?: boolean; limit?: string },
) {
  return withApp(ctx, async (app) => {
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
  });
}

export function replayCommand(
  ctx: CommandContext,
  ids: string[],
  opts: { subscription?: string; since?: string; until?: string; force?: boolean },
) {
  return withApp(ctx, async (app) => {
    const sel = ids.length ? { ids } : rangeSelection(opts);
    const replayed = await replay(app.db, sel, new Date(), { force: opts.force });
    ctx.stdout.write(
      `replayed ${replayed.length} deliver${replayed.length === 1 ? "y" : "ies"}${replayed.length ? `: ${replayed.map((r) => r.id).join(", ")}` : " (only dead or failed ones are replayed)"}\n`,
    );
  });
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
