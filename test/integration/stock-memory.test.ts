import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, inject, it } from "vitest";
import { createTestDb } from "../helpers/db.js";
import { runMeasured } from "../helpers/memory.js";

const ROWS = 1_000_000;

describe.skipIf(!inject("pgTemplate"))("full snapshot memory", () => {
  // 200 MB proves the rows are streamed (held in memory, 1M rows take several hundred MB) with
  // tsx loaded. The README's 150 MB goal is the bundle's, measured by `npm run bench -- full`.
  it(`streams ${ROWS.toLocaleString("en")} rows end to end with peak RSS under 200 MB`, async () => {
    const t = await createTestDb("postgres");
    const dir = await mkdtemp(join(tmpdir(), "stock-sync-mem-"));
    try {
      const config = join(dir, "mem.yaml");
      await writeFile(
        config,
        `database:\n  url: "${t.url}"\n  data_dir: ${dir}/data\nsource:\n  url: "${t.url}"\nstock:\n  capture: { mode: full_diff }\n  queries:\n` +
          `    sellable: "select 'SKU-' || lpad(g::text, 8, '0') as sku, 'LOC-' || (g % 50) as location, (g % 97) as quantity from generate_series(1, ${ROWS}) g where $1::int >= 0"\n` +
          // all three queries or none (config check); a full uses only the first
          `    sellable_keys: "select 'x' as sku, 'y' as location, 0 as quantity where false"\n    time_candidates: none\n` +
          `subscriptions:\n  - name: oms\n    subjects: [stock.full]\n    url: "file://${dir}/out"\n`,
      );
      const { code, stdout, stderr, peakRssMb: peak } = await runMeasured(["--config", config, "snapshot"]);
      expect(stderr).not.toMatch(/"level":50/);
      expect(code).toBe(0);
      expect(stdout).toMatch(new RegExp(`full snapshot: ${ROWS} rows, 20 part\\(s\\).*enqueued`));
      const { rows } = await t.db.query<{ n: number }>(
        "select count(*)::int as n from stock_sync.stock_sent",
      );
      expect(rows[0]!.n).toBe(ROWS);
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThan(200);
    } finally {
      await t.drop();
      await rm(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
