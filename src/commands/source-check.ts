import { openApp } from "../app.js";
import { openPostgres } from "../db/pg.js";
import { ConnectorError } from "../errors.js";
import { checkSource } from "../inventory/check.js";
import { type CommandContext, configAndLog } from "./context.js";

/**
 * `stock-sync source check`: the configured queries against the real source, findings printed one
 * a line ("ok:" or "problem:"); exit 1 when there is a problem. A configured source is opened
 * alone (the state database is not needed); without one the demo source is checked.
 */
export async function sourceCheckCommand(ctx: CommandContext): Promise<void> {
  const { config, log } = await configAndLog(ctx);
  const app = config.source.url ? null : await openApp(config, log);
  const source = app?.source ?? openPostgres(config.source.url, { poolSize: 2 });
  try {
    const findings = await checkSource({ source, stock: config.stock, now: new Date() });
    for (const f of findings) ctx.stdout.write(`${f.ok ? "ok" : "problem"}: ${f.text}\n`);
    const problems = findings.filter((f) => !f.ok).length;
    if (problems)
      throw new ConnectorError(
        "INVALID_INPUT",
        `source check: ${problems} problem${problems > 1 ? "s" : ""} found`,
      );
    ctx.stdout.write("source check: no problems found\n");
  } finally {
    if (app) await app.close();
    else await source.close();
  }
}
