/**
 * Per-subscription bodies (issue 14): a 1M-row full enqueued by `stock-sync snapshot --force`
 * for one subscription taking NDJSON, one taking JSON through a template (5,000 rows per
 * message), against the same full for a plain CSV subscription, in the same runs. The snapshot
 * process (read, render, enqueue, sent state; no delivery) is the figure; its peak RSS the memory.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { rssRow } from "./full.js";
import { runStockSync } from "./lib/child.js";
import { createBenchDb } from "./lib/db.js";
import type { BenchOptions, Row } from "./lib/report.js";
import { progress, repeat, summarize } from "./lib/stats.js";
import { benchConfigYaml, createStockTable } from "./lib/stock.js";

const BODIES = {
  csv: "",
  ndjson: `    body: { format: ndjson, columns: [sku, location, quantity], rows_per_message: 5000 }\n`,
  template: `    body:
      format: json
      rows_per_message: 5000
      template: '{"action": "UPSERT", "entityType": "INVENTORY", "entities": [rows.{"locationRef": location, "skuRef": sku, "qty": quantity}]}'
`,
} as const;
type Kind = keyof typeof BODIES;

export async function run(opts: BenchOptions): Promise<Row[]> {
  const rows = opts.quick ? 500 : 1_000_000;
  const bench = await createBenchDb("formats");
  const dir = await mkdtemp(join(tmpdir(), "stock-sync-bench-formats-"));
  try {
    progress(`formats: filling ${rows.toLocaleString("en-US")} rows`);
    await createStockTable(bench.db, rows);
    const configs = {} as Record<Kind, string>;
    for (const kind of Object.keys(BODIES) as Kind[]) {
      configs[kind] = join(dir, `${kind}.yaml`);
      await writeFile(configs[kind], configYaml(bench.url, dir, BODIES[kind]));
    }
    const once = async (kind: Kind) => {
      const child = await runStockSync(["--config", configs[kind], "snapshot", "--force"]);
      if (child.code !== 0 || !child.stdout.includes(`full snapshot: ${rows} rows`))
        throw new Error(
          `stock-sync snapshot (${kind}) failed (${child.code}): ${child.stdout}${child.stderr}`,
        );
      // each full leaves its messages pending: drop them so every run starts from the same outbox
      await bench.db.query("truncate stock_sync.messages cascade");
      await bench.db.query("vacuum analyze stock_sync.stock_sent");
      return { rowsPerSec: rows / (child.ms / 1000), rssMb: child.peakRssMb };
    };
    progress("formats: warm-up (a first full, so every run replaces a sent state)");
    await once("csv");
    const runs = await repeat("formats", { warmups: 0, runs: 3 }, async () => ({
      csv: await once("csv"),
      ndjson: await once("ndjson"),
      template: await once("template"),
    }));
    const label = rows >= 1_000_000 ? `${rows / 1_000_000}M` : String(rows);
    const baseline = {
      label: "CSV subscription",
      unit: "rows/s",
      value: summarize(runs.map((r) => r.csv.rowsPerSec)),
    };
    const rate = (kind: Kind, figure: string): Row => {
      const ratio = summarize(runs.map((r) => r[kind].rowsPerSec / r.csv.rowsPerSec));
      return {
        figure: `full ${label} enqueued as ${figure}`,
        unit: "rows/s",
        value: summarize(runs.map((r) => r[kind].rowsPerSec)),
        baseline,
        ratio,
        goal: "≥ 0.5× CSV",
        met: ratio.median >= 0.5,
      };
    };
    return [
      rate("ndjson", "NDJSON (5,000 rows/message)"),
      rate("template", "JSON via a template (5,000 rows/message)"),
      rssRow(`full ${label} with a body: peak RSS of \`stock-sync snapshot\``, [
        ...runs.map((r) => r.ndjson.rssMb),
        ...runs.map((r) => r.template.rssMb),
      ]),
    ];
  } finally {
    await bench.drop();
    await rm(dir, { recursive: true, force: true });
  }
}

function configYaml(url: string, dir: string, body: string): string {
  return benchConfigYaml(url, dir, {
    format: "{ part_rows: 50000 }",
    subscriptions: `  - name: oms\n    subjects: [stock.full]\n    url: "file://${join(dir, "out")}"\n${body}`,
    log: "{ level: warn, format: json }",
  });
}
