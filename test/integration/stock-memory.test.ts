import { spawn } from "node:child_process";
import { once } from "node:events";
import { readFile, rm, writeFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, inject, it } from "vitest";
import { BIN, ROOT } from "../helpers/cli.js";
import { createTestDb } from "../helpers/db.js";

const ROWS = 1_000_000;

/** Peak resident memory of a running process (VmHWM), polled until it exits. */
async function peakRssMb(pid: number, exited: Promise<unknown>): Promise<number> {
  let peak = 0;
  let running = true;
  void exited.then(() => (running = false));
  while (running) {
    const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
    const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
    peak = Math.max(peak, kb / 1024);
    await new Promise((r) => setTimeout(r, 50));
  }
  return peak;
}

describe.skipIf(!inject("pgTemplate"))("full snapshot memory", () => {
  it(`streams ${ROWS.toLocaleString("en")} rows end to end with peak RSS under 200 MB`, async () => {
    const t = await createTestDb("postgres");
    const dir = await mkdtemp(join(tmpdir(), "stock-sync-mem-"));
    try {
      const config = join(dir, "mem.yaml");
      await writeFile(
        config,
        `database:\n  url: "${t.url}"\n  data_dir: ${dir}/data\nstock:\n  capture: { mode: full_diff }\n  queries:\n` +
          `    sellable: "select 'SKU-' || lpad(g::text, 8, '0') as sku, 'LOC-' || (g % 50) as location, (g % 97) as quantity from generate_series(1, ${ROWS}) g where $1::int >= 0"\n` +
          `subscriptions:\n  - name: oms\n    subjects: [stock.full]\n    url: "file://${dir}/out"\n`,
      );
      const child = spawn(process.execPath, [BIN, "--config", config, "snapshot"], {
        cwd: ROOT,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      const exited = once(child, "exit");
      const peak = await peakRssMb(child.pid!, exited);
      const [code] = await exited;
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
