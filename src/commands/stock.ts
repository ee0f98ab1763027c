import { createWriteStream } from "node:fs";
import { once } from "node:events";
import cliProgress from "cli-progress";
import { ConnectorError } from "../errors.js";
import { createExporter } from "../export/exporter.js";
import type { RunResult } from "../export/run.js";
import type { RunKind } from "../export/state.js";
import { captureSql } from "../inventory/capture.js";
import { exportDeps, openApp } from "../app.js";
import { type CommandContext, configAndLog } from "./context.js";

type StockOptions = { out?: string; dryRun?: boolean; force?: boolean };

/** `stock-sync snapshot` / `delta`: one run now, enqueued for delivery (or written with --out). */
export async function stockCommand(ctx: CommandContext, kind: RunKind, opts: StockOptions): Promise<void> {
  const { config, log } = await configAndLog(ctx);
  const app = await openApp(config, log);
  const toStdout = opts.out === "-";
  // The summary goes to stderr when stdout carries the CSV.
  const report = toStdout ? ctx.stderr : ctx.stdout;
  const out = opts.out ? (toStdout ? ctx.stdout : createWriteStream(opts.out)) : undefined;
  const bar = (ctx.stderr as { isTTY?: boolean }).isTTY
    ? new cliProgress.SingleBar(
        { stream: ctx.stderr as NodeJS.WriteStream, format: `${kind} {value} rows read` },
        cliProgress.Presets.shades_classic,
      )
    : null;
  bar?.start(0, 0);
  try {
    const result = await createExporter(exportDeps(app)).run(kind, {
      trigger: "cli",
      force: opts.force,
      dryRun: opts.dryRun,
      out,
      onProgress: (rows) => bar?.update(rows),
    });
    bar?.stop();
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
    bar?.stop();
    await app.close();
  }
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
  return `${what}: ${r.rows} rows, ${r.parts} part(s), ${seconds}s, ${status}`;
}

/** `stock-sync source install [--apply]`: the change-capture SQL for the configured tables. */
export async function sourceInstallCommand(ctx: CommandContext, opts: { apply?: boolean }): Promise<void> {
  const { config, log } = await configAndLog(ctx);
  const sql = captureSql(config.stock.capture.tables);
  if (!opts.apply) {
    ctx.stdout.write(sql);
    return;
  }
  const app = await openApp(config, log);
  try {
    await app.source.query(sql);
    ctx.stdout.write(`change capture installed on ${config.stock.capture.tables.length} source tables\n`);
  } finally {
    await app.close();
  }
}
