/**
 * The full-snapshot figures at 5M keys (issue 16: the same ratios as at 1M, and peak RSS of
 * `stock-sync snapshot` <= 150 MB): bench/full.ts's runs over a 5M-row table, uncompressed parts
 * only. Not in the default suite (filling 5M rows and three runs take ~10 minutes on 2 cores):
 * `npm run bench -- full5m`.
 */
import { runFullBench } from "./full.js";
import type { BenchOptions, Row } from "./lib/report.js";

export function run(opts: BenchOptions): Promise<Row[]> {
  return runFullBench({
    rows: opts.quick ? 1_000 : 5_000_000,
    partRows: opts.quick ? 100 : 50_000,
    gzip: false,
  });
}
