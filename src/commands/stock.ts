import { createWriteStream, type WriteStream } from "node:fs";
import { once } from "node:events";
import { ConnectorError } from "../errors.js";
import { createExporter } from "../export/exporter.js";
import type { RunResult } from "../export/run.js";
import type { RunKind } from "../export/state.js";
import { captureSql } from "../inventory/capture.js";
import { checkBeforeInstall, installCapture } from "../inventory/capture-catalog.js";
import { openPostgres } from "../db/pg.js";
import { exportDeps, openApp } from "../app.js";
import { type CommandContext, configAndLog } from "./context.js";
import { LinesBesideBar } from "./progress.js";

type StockOptions = { out?: string; dryRun?: boolean; force?: boolean; subscription?: string };

/** `stock-sync snapshot` / `delta`: one run now, enqueued for delivery (or written with --out). */
export async function stockCommand(ctx: CommandContext, kind: RunKind, opts: StockOptions): Promise<void> {
  // Log lines reach stderr through this, so none lands on the progress bar's line.
  const stderr = new LinesBesideBar(ctx.stderr);
  const { config, log } = await configAndLog({ ...ctx, stderr });
  if (opts.subscription && !opts.out)
    throw new ConnectorError(
      "CONFIG_INVALID",
      "--subscription needs --out (FILE or -): it prints that subscription's bodies",
    );
  // --dry-run and --out change nothing: they neither create an embedded database nor load the demo.
  const readOnly = Boolean(opts.dryRun || opts.out);
  const app = await openApp(config, log, { loadDemo: !readOnly, create: !readOnly });
  if (app.demo === "missing") {
    await app.close();
    throw new ConnectorError(
      "NOT_AVAILABLE",
      `the demo inventory is not loaded yet, and ${kind} ${opts.dryRun ? "--dry-run" : "--out"} does not load it: run \`stock-sync start\` or \`stock-sync ${kind === "full" ? "snapshot" : "delta"}\` first`,
    );
  }
  const toStdout = opts.out === "-";
  // The summary goes to stderr when stdout carries the CSV.
  const report = toStdout ? ctx.stderr : ctx.stdout;
  let out: NodeJS.WritableStream | undefined;
  try {
    out = opts.out ? (toStdout ? ctx.stdout : await openOut(opts.out)) : undefined;
  } catch (err) {
    await app.close();
    throw err;
  }
  const bar = stderr.startBar(`${kind} {value} rows read`);
  try {
    const result = await createExporter(exportDeps(app)).run(kind, {
      trigger: "cli",
      force: opts.force,
      dryRun: opts.dryRun,
      out,
      subscription: opts.subscription,
      onProgress: (rows) => bar?.update(rows),
    });
    stderr.stopBar();
    if (out && !toStdout) {
      (out as NodeJS.WritableStream).end();
      await once(out, "close");
    }
    if (result.status === "skipped")
      throw new ConnectorError("NOT_AVAILABLE", `${kind} skipped: ${result.detail}`);
    report.write(`${summary(result)}\n`);
    if (result.status === "refused") {
      throw new ConnectorError(
        "INVALID_INPUT",
        `${kind === "full" ? "full snapshot" : "delta"} refused: ${result.detail} (use --force to send it anyway)`,
      );
    }
  } finally {
    stderr.stopBar();
    await app.close();
  }
}

/**
 * The --out file, opened before the run starts: a path that cannot be written fails here, in one
 * line, instead of as an unhandled stream error (or after a run that logged "written").
 */
async function openOut(path: string): Promise<WriteStream> {
  const file = createWriteStream(path);
  try {
    await once(file, "open");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new ConnectorError("INVALID_INPUT", `cannot write --out ${path}: ${code}`, { cause: err });
  }
  return file;
}

function summary(r: RunResult): string {
  const what = r.kind === "full" ? "full snapshot" : "delta";
  const seconds = (r.durationMs / 1000).toFixed(2);
  const status = {
    enqueued: `enqueued for delivery (run ${r.runId}, ${r.snapshotId})`,
    empty: "nothing changed: no message",
    refused: "REFUSED by the shrink guard",
    written: "written (nothing enqueued, state unchanged)",
    "dry-run": "dry run (nothing enqueued, state unchanged)",
    running: "running",
    failed: "failed",
  }[r.status];
  // A delta that compared every key says why (a TRUNCATE, a re-install, another source).
  const why = r.kind === "delta" && r.detail ? ` (${r.detail})` : "";
  return `${what}: ${r.rows} rows, ${r.parts} part(s), ${seconds}s, ${status}${why}`;
}

/**
 * `stock-sync source install [--apply]`: the change-capture SQL for the configured tables,
 * generated only once every table and column was found in the source's catalogue (else exit 2).
 */
export async function sourceInstallCommand(ctx: CommandContext, opts: { apply?: boolean }): Promise<void> {
  const { config, log } = await configAndLog(ctx);
  const { tables, enable_always } = config.stock.capture;
  const source = config.source.url ? null : await openApp(config, log);
  const db = source?.source ?? openPostgres(config.source.url, { poolSize: 1 });
  try {
    if (opts.apply) {
      await installCapture(db, { tables, enable_always });
      ctx.stdout.write(`change capture installed on ${tables.length} source tables\n`);
    } else {
      const resolved = await checkBeforeInstall(db, tables);
      ctx.stdout.write(captureSql(resolved, { enableAlways: enable_always, transaction: true }));
    }
  } finally {
    await (source ? source.close() : db.close());
  }
}
