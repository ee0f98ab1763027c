// Issue 17.1: the demo inventory can never reach a real state database (and so a real OMS) by
// accident, and read-only commands never write demo data.
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { runCli } from "../helpers/cli.js";
import { migratedDataDir } from "../helpers/data-dir.js";
import { createTestDb, type TestDb } from "../helpers/db.js";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "stock-sync-demo-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function config(name: string, yaml: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, yaml);
  return path;
}

const schemas = async (t: TestDb) =>
  (
    await t.db.query<{ nspname: string }>(
      "select nspname from pg_namespace where nspname in ('inventory', 'stock_sync_capture') order by 1",
    )
  ).rows.map((r) => r.nspname);

const stockSub = (out: string) =>
  `subscriptions:\n  - name: oms-stock\n    subjects: [stock.full, stock.delta]\n    url: "file://${out}"\n`;

describe.skipIf(!inject("pgTemplate"))("demo inventory and a real state database", () => {
  let t: TestDb & { drop(keep?: boolean): Promise<void> };
  beforeAll(async () => {
    t = await createTestDb("postgres");
  });
  afterAll(async () => {
    await t?.drop();
  });

  it("a real database.url with no source.url is a config error naming source.url, and writes nothing", async () => {
    const path = await config(
      "forgot-source.yaml",
      `database:\n  url: "${t.url}"\n${stockSub(join(dir, "out1"))}`,
    );
    for (const cmd of [["status"], ["snapshot", "--dry-run"], ["start"]]) {
      const r = await runCli(["--config", path, ...cmd]);
      expect(r.code, cmd.join(" ")).toBe(2);
      expect(r.stderr.trim().split("\n"), cmd.join(" ")).toHaveLength(1);
      expect(r.stderr).toContain("source.url");
    }
    expect(await schemas(t)).toEqual([]);
    expect(existsSync(join(dir, "out1"))).toBe(false);
  }, 60_000);

  it("the shipped config with DATABASE_URL set and SOURCE_DATABASE_URL forgotten is refused the same way", async () => {
    const r = await runCli(["status"], { env: { DATABASE_URL: t.url! } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("source.url");
    expect(await schemas(t)).toEqual([]);
  });

  it("source.demo: true with a source.url is contradictory: exit 2", async () => {
    const path = await config(
      "both.yaml",
      `database:\n  url: "${t.url}"\nsource:\n  url: "${t.url}"\n  demo: true\n`,
    );
    const r = await runCli(["--config", path, "status"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("source.demo");
  });

  it("with source.demo: true, read-only commands still write no demo data; a real snapshot loads it", async () => {
    const out = join(dir, "out2");
    const path = await config(
      "demo-on-pg.yaml",
      `database:\n  url: "${t.url}"\nsource:\n  demo: true\n${stockSub(out)}`,
    );
    const status = await runCli(["--config", path, "status"]);
    expect(status.code).toBe(0);
    const dry = await runCli(["--config", path, "snapshot", "--dry-run"]);
    expect(dry.code).toBe(1);
    expect(dry.stderr.trim().split("\n")).toHaveLength(1);
    expect(dry.stderr).toContain("demo inventory is not loaded");
    const toStdout = await runCli(["--config", path, "delta", "--out", "-"]);
    expect(toStdout.code).toBe(1);
    expect(await schemas(t)).toEqual([]);

    const snap = await runCli(["--config", path, "snapshot"]);
    expect(snap.stderr).toContain("demo inventory loaded");
    expect(snap.code).toBe(0);
    expect(snap.stdout).toMatch(/full snapshot: 1125 rows.*enqueued/);
    expect(await schemas(t)).toEqual(["inventory", "stock_sync_capture"]);
  }, 90_000);
});

describe("demo inventory on the embedded database", () => {
  it("read-only commands on an existing embedded database write no demo data", async () => {
    const data = join(dir, "embedded-data");
    const path = await config(
      "embedded.yaml",
      `database:\n  data_dir: ${data}\n${stockSub(join(dir, "out3"))}`,
    );
    await migratedDataDir(data); // an existing embedded database: created and migrated
    const status = await runCli(["--config", path, "status"]);
    expect(status.code).toBe(0);
    expect(status.stderr).not.toContain("demo inventory loaded");
    const dry = await runCli(["--config", path, "snapshot", "--dry-run"]);
    expect(dry.code).toBe(1);
    expect(dry.stderr).toContain("demo inventory is not loaded");
    expect(dry.stderr).not.toContain("demo inventory loaded");
    // The embedded default still runs the demo with no switch: a real snapshot loads it.
    const snap = await runCli(["--config", path, "snapshot"]);
    expect(snap.stderr).toContain("demo inventory loaded");
    expect(snap.code).toBe(0);
    expect(snap.stdout).toMatch(/full snapshot: 1125 rows.*enqueued/);
  }, 120_000);
});
