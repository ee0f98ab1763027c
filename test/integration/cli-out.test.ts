// Issue 17.10: an --out file that cannot be written is one line and exit 1, and nothing is
// claimed written, on PostgreSQL and on the embedded database.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { migratedDataDir } from "../helpers/data-dir.js";
import { createTestDb, type TestDb } from "../helpers/db.js";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "stock-sync-out-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const BAD = "/nonexistent/dir/x.csv";

async function expectRefused(config: string) {
  for (const kind of ["snapshot", "delta"]) {
    const r = await runCli(["--config", config, kind, "--out", BAD]);
    expect(r.code, kind).toBe(1);
    const lines = r.stderr.trim().split("\n");
    expect(lines, r.stderr).toHaveLength(1);
    expect(lines[0]).toMatch(/^stock-sync: .*\/nonexistent\/dir\/x\.csv.*ENOENT/);
    expect(r.stdout + r.stderr).not.toContain("written");
  }
}

describe.skipIf(!inject("pgTemplate"))("--out to a directory that does not exist, on PostgreSQL", () => {
  let t: TestDb & { drop(keep?: boolean): Promise<void> };
  beforeAll(async () => {
    t = await createTestDb("postgres");
  });
  afterAll(async () => {
    await t?.drop();
  });

  it("snapshot and delta: one line, exit 1, nothing claimed written", async () => {
    const config = join(dir, "pg.yaml");
    await writeFile(
      config,
      `database:\n  url: "${t.url}"\nsource:\n  url: "${t.url}"\nstock:\n  capture: { mode: full_diff }\n  queries:\n` +
        `    sellable: "select 'SKU-' || g as sku, 'LOC-1' as location, g as quantity from generate_series(1, 100) g where $1::int >= 0"\n` +
        `    sellable_keys: "select 'SKU-' || g as sku, 'LOC-1' as location, g as quantity from generate_series(1, 100) g where $1::int >= 0 and ('SKU-' || g) = any($2::text[]) and 'LOC-1' = any($3::text[])"\n` +
        `    time_candidates: none\n`,
    );
    await expectRefused(config);
  }, 60_000);
});

describe("--out to a directory that does not exist, on the embedded database", () => {
  it("snapshot and delta: one line, exit 1, nothing claimed written", async () => {
    const config = join(dir, "embedded.yaml");
    await writeFile(
      config,
      `database:\n  data_dir: ${join(dir, "data")}\nsubscriptions:\n  - name: oms\n    subjects: [stock.full, stock.delta]\n    url: "file://${dir}/sent"\n`,
    );
    // The database exists (a copy of the migrated template: creating it is not this test's
    // claim); a sending snapshot loads the demo inventory first.
    await migratedDataDir(join(dir, "data"));
    const first = await runCli(["--config", config, "snapshot"]);
    expect(first.code, first.stderr).toBe(0);
    await expectRefused(config);
  }, 180_000);
});
