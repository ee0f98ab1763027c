import { stringify } from "yaml";
import { durationsAsText, redactConfig } from "../config/index.js";
import { migrate } from "../db/migrate.js";
import { openStateDb } from "../db/open.js";
import { loadFormats } from "../formats/registry.js";
import { buildSubscriptions } from "../subscriptions/subscriptions.js";
import { type CommandContext, configAndLog, readConfig } from "./context.js";

export async function configCheck(ctx: CommandContext): Promise<void> {
  const { config, warnings } = await readConfig(ctx);
  // map files are part of the config: unreadable or malformed is exit 2, naming the path
  await loadFormats(buildSubscriptions(config), { partRows: config.stock.format.part_rows });
  for (const w of warnings) ctx.stderr.write(`warning: ${w}\n`);
  // Durations as the file writes them ("30s"): the output is itself a valid config.
  const printable = durationsAsText(redactConfig(config));
  ctx.stdout.write(`# ${ctx.configPath}: valid (secrets redacted)\n${stringify(printable)}`);
}

export async function migrateCommand(ctx: CommandContext): Promise<void> {
  const { config, log } = await configAndLog(ctx);
  const db = await openStateDb(config.database);
  try {
    const { applied, latest } = await migrate(db);
    ctx.stdout.write(
      applied.length
        ? `applied ${applied.length} migration(s): ${applied.join(", ")}\n`
        : `state schema up to date (migration ${String(latest).padStart(4, "0")})\n`,
    );
  } finally {
    await db.close();
    log.flush();
  }
}

/** Runs until SIGINT/SIGTERM, then stops taking work, finishes what is in flight and resolves. */
export async function startCommand(ctx: CommandContext): Promise<void> {
  const { config, log } = await configAndLog(ctx);
  const { startConnector } = await import("../main.js");
  const running = await startConnector(config, log);
  await new Promise<void>((resolve) => {
    const onSignal = (signal: string) => {
      log.info({ signal }, "stopping");
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      running.stop().then(resolve, (err) => {
        log.error({ err }, "error while stopping");
        resolve();
      });
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    // SIGHUP re-reads the code map files; a bad file is logged and the maps in use stay
    process.on("SIGHUP", () => {
      running.reloadMaps().catch((err) => log.error({ err }, "code maps not re-read"));
    });
  });
}
