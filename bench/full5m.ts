/**
 * The memory half of the full-snapshot figure at 5M keys: `stock-sync snapshot --force` over a
 * 5M-row table, one run, peak RSS only. Not in the default suite (filling 5M rows and reading
 * them back takes minutes): `npm run bench -- full5m`.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { configYaml, rssRow } from "./full.js";
import { runStockSync } from "./lib/child.js";
import { createBenchDb } from "./lib/db.js";
import type { BenchOptions, Row } from "./lib/report.js";
import { progress } from "./lib/stats.js";
import { createStockTable } from "./lib/stock.js";

export async function run(opts: BenchOptions): Promise<Row[]> {
  const rows = opts.quick ? 1_000 : 5_000_000;
  const bench = await createBenchDb("full5m");
  const dir = await mkdtemp(join(tmpdir(), "stock-sync-bench-full5m-"));
  try {
    progress(`full5m: filling ${rows.toLocaleString("en-US")} rows`);
    await createStockTable(bench.db, rows);
    const config = join(dir, "plain.yaml");
    // the HTTP subscription points nowhere: nothing is delivered, only the snapshot is measured
    await writeFile(
      config,
      configYaml(bench.url, dir, "http://127.0.0.1:9", false, opts.quick ? 100 : 50_000),
    );
    progress("full5m: snapshot");
    const child = await runStockSync(["--config", config, "snapshot", "--force"]);
    if (child.code !== 0 || !child.stdout.includes(`full snapshot: ${rows} rows`)) {
      throw new Error(`stock-sync snapshot failed (${child.code}): ${child.stdout}${child.stderr}`);
    }
    const label = opts.quick ? String(rows) : "5M";
    return [
      {
        ...rssRow(`full ${label}: peak RSS of \`stock-sync snapshot\``, [child.peakRssMb]),
        note: `one run (memory only); the snapshot took ${(child.ms / 1000).toFixed(1)} s`,
      },
    ];
  } finally {
    await bench.drop();
    await rm(dir, { recursive: true, force: true });
  }
}
