import { readFileSync } from "node:fs";
import { Command, CommanderError, InvalidArgumentError } from "commander";
import type { CommandContext } from "./commands/context.js";
import { DEFAULT_CONFIG } from "./commands/defaults.js";
import { ConnectorError, exitCodeFor } from "./errors.js";
import { fromRoot } from "./root.js";

type Io = { env?: NodeJS.ProcessEnv; stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream };

/** argv -> command; resolves to the exit code (SPEC §2: 0 ok, 1 failure, 2 usage or config). */
export async function main(argv: string[], io: Io = {}): Promise<number> {
  const env = io.env ?? process.env;
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const program = new Command("stock-sync")
    // Set before the subcommands are added: each inherits them (commander copies them at creation).
    .exitOverride()
    .configureOutput({
      writeOut: (s) => stdout.write(s),
      writeErr: (s) => stderr.write(s),
      // SPEC §2: a usage error is one line on stderr (no help text after it), exit 2 below.
      outputError: (s, write) => write(`stock-sync: ${s.trim().replace(/^error: /, "")} (see --help)\n`),
    })
    .configureHelp({ showGlobalOptions: true });
  buildProgram(program, (opts) => ({
    configPath: opts.config ?? env.STOCK_SYNC_CONFIG ?? DEFAULT_CONFIG,
    env,
    stdout,
    stderr,
  }));
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    stderr.write(`stock-sync: ${oneLine(err)}\n`);
    return exitCodeFor(err);
  }
}

function oneLine(err: unknown): string {
  if (err instanceof ConnectorError) return err.message;
  const e = err as { code?: string; message?: string };
  return (e.message ?? String(err)).split("\n")[0] + (e.code ? ` (${e.code})` : "");
}

type Ctx = (opts: { config?: string }) => CommandContext;

// Each command loads only its own modules: `snapshot` never loads the HTTP server or PGlite.
const basic = () => import("./commands/basic.js");
const stock = () => import("./commands/stock.js");
const deliveries = () => import("./commands/deliveries.js");

/** `--limit`: the same rule and message as `GET /api/deliveries?limit=`. */
const MAX_LIMIT = 1000;
function parseLimit(text: string): string {
  if (!/^\d{1,7}$/.test(text) || Number(text) < 1 || Number(text) > MAX_LIMIT)
    throw new InvalidArgumentError(`limit: expected a whole number from 1 to ${MAX_LIMIT}`);
  return text;
}

/** `--status`: the same rule and message as `GET /api/deliveries?status=`. */
const STATUSES = ["pending", "failed", "delivered", "dead", "superseded"];
function parseStatus(text: string): string {
  if (!STATUSES.includes(text))
    throw new InvalidArgumentError(`status: expected one of ${STATUSES.join(", ")}`);
  return text;
}

/** A command that only groups subcommands: alone, it is a usage error (exit 2), not a help page. */
const needsSubcommand = (name: string, subs: string) => () => {
  throw new ConnectorError("CONFIG_INVALID", `${name}: expected a subcommand: ${subs} (see ${name} --help)`);
};

const version = () =>
  (JSON.parse(readFileSync(fromRoot("package.json"), "utf8")) as { version: string }).version;

function buildProgram(program: Command, ctxOf: Ctx): Command {
  program
    .description("Keeps an OMS in step with inventory and order flows.")
    .version(version(), "-V, --version", "print the version")
    .option("-c, --config <path>", `config file (default ${DEFAULT_CONFIG}, or $STOCK_SYNC_CONFIG)`);
  const ctx = () => ctxOf(program.opts());

  program
    .command("start")
    .description("run everything: scheduler, delivery workers, HTTP server")
    .action(async () => (await basic()).startCommand(ctx()));
  program
    .command("snapshot")
    .description("a full stock snapshot now")
    .option("--out <file>", "write the CSV to FILE (or - for stdout) instead of enqueueing")
    .option("--subscription <name>", "with --out: write the bodies this subscription would receive")
    .option("--dry-run", "compute and report, send nothing")
    .option("--force", "override the shrink guard")
    .action(async (opts) => (await stock()).stockCommand(ctx(), "full", opts));
  program
    .command("delta")
    .description("a stock delta now")
    .option("--out <file>", "write the CSV to FILE (or - for stdout) instead of enqueueing")
    .option("--subscription <name>", "with --out: write the bodies this subscription would receive")
    .option("--dry-run", "compute and report, send nothing")
    .option("--force", "override the shrink guard (send a delta that zeroes many keys)")
    .action(async (opts) => (await stock()).stockCommand(ctx(), "delta", opts));
  program
    .command("status")
    .description("subscriptions and last stock runs")
    .option("--json", "machine-readable output")
    .action(async (opts) => (await deliveries()).statusCommand(ctx(), opts));
  program
    .command("pause <name>")
    .description("pause one subscription (messages are kept)")
    .action(async (name: string) => (await deliveries()).pauseCommand(ctx(), name, "paused"));
  program
    .command("resume <name>")
    .description("resume one subscription")
    .action(async (name: string) => (await deliveries()).pauseCommand(ctx(), name, "enabled"));
  program
    .command("deliveries")
    .description("list messages")
    .option("--status <status>", `only messages in this state: ${STATUSES.join(" | ")}`, parseStatus)
    .option("--subscription <name>", "only this subscription")
    .option("--limit <n>", `at most this many (1 to ${MAX_LIMIT}), newest first`, parseLimit, "100")
    .option("--id <id>", "one delivery (id or webhook-id): its attempts and import job")
    .option("--json", "machine-readable output")
    .action(async (opts) => (await deliveries()).deliveriesCommand(ctx(), opts));
  program
    .command("replay [ids...]")
    .description("deliver dead or failed messages again (same webhook-id)")
    .option("--subscription <name>", "replay a subscription's messages in a time range")
    .option("--since <time>", "start of the range")
    .option("--until <time>", "end of the range")
    .option("--force", "replay stock older than stock already delivered (it overwrites newer stock)")
    .action(async (ids: string[], opts) => (await deliveries()).replayCommand(ctx(), ids, opts));
  program
    .command("migrate")
    .description("apply state-schema migrations")
    .action(async () => (await basic()).migrateCommand(ctx()));
  const config = program
    .command("config")
    .description("configuration tools")
    .action(needsSubcommand("config", "check"));
  config
    .command("check")
    .description("validate the config and print it with secrets redacted")
    .action(async () => (await basic()).configCheck(ctx()));
  const source = program
    .command("source")
    .description("source database tools")
    .action(needsSubcommand("source", "install"));
  source
    .command("install")
    .description("print or apply the change-capture triggers on the source")
    .option("--apply", "apply the SQL instead of printing it")
    .action(async (opts) => (await stock()).sourceInstallCommand(ctx(), opts));
  source
    .command("check")
    .description("run the stock queries on the source and say what is wrong (keys, columns, capture)")
    .action(async () => (await import("./commands/source-check.js")).sourceCheckCommand(ctx()));
  return program;
}
