// Issue 17.8, 17.9, 17.12, 17.16: usage errors, input validation, where the embedded database is,
// and the small things an operator meets first (--help, --version, status's next runs).
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ROOT, runCli } from "../helpers/cli.js";
import { createTestDb, type TestDb } from "../helpers/db.js";

let dir: string;
let path: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "stock-sync-usage-"));
  // Never the repository's ./data: every command here names its own config.
  path = join(dir, "c.yaml");
  await writeFile(
    path,
    `database:\n  data_dir: ${join(dir, "data")}\nsubscriptions:\n  - name: oms\n    subjects: [stock.full]\n    url: "file://${dir}/out"\n`,
  );
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const oneLine = (s: string) => expect(s.trim().split("\n")).toHaveLength(1);

describe("usage errors (17.8): exit 2, one line, nothing opened", () => {
  const cases = [
    ["snapshot", "--bogus"],
    ["delta", "--bogus"],
    ["status", "--bogus"],
    ["source", "install", "--bogus"],
    ["pause"],
    ["resume"],
    ["config"],
    ["source"],
    ["deliveries", "--status", "bogus"],
    ["deliveries", "--limit", "abc"],
    ["deliveries", "--limit", "-1"],
    ["deliveries", "--limit", "0"],
    ["replay"],
    ["no-such-command"],
  ];
  for (const args of cases) {
    it(args.join(" "), async () => {
      const r = await runCli(["--config", path, ...args]);
      expect(r.code).toBe(2);
      oneLine(r.stderr);
      expect(r.stderr).toMatch(/^stock-sync: /);
      expect(r.stdout).toBe("");
      expect(existsSync(join(dir, "data"))).toBe(false);
    });
  }

  it("--status says what the API says", async () => {
    const r = await runCli(["--config", path, "deliveries", "--status", "bogus"]);
    expect(r.stderr).toContain("status: expected one of pending, failed, delivered, dead, superseded");
  });

  it("--limit says what the API says", async () => {
    for (const bad of ["abc", "-1", "1001"]) {
      const r = await runCli(["--config", path, "deliveries", "--limit", bad]);
      expect(r.stderr).toContain("limit: expected a whole number from 1 to 1000");
    }
  });
});

describe("an unknown subscription is exit 1 everywhere (17.9)", () => {
  for (const args of [
    ["pause", "nope"],
    ["resume", "nope"],
    ["deliveries", "--subscription", "nope"],
    ["replay", "--subscription", "nope", "--since", "2026-01-01T00:00:00Z"],
  ]) {
    it(args.join(" "), async () => {
      const r = await runCli(["--config", path, ...args]);
      expect(r.code).toBe(1);
      oneLine(r.stderr);
      expect(r.stderr).toContain('no subscription named "nope"');
    });
  }
});

describe("help and version (17.16)", () => {
  it("a subcommand's --help shows the global --config", async () => {
    for (const cmd of ["snapshot", "status", "deliveries"]) {
      const r = await runCli([cmd, "--help"]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain("--config <path>");
    }
  });

  it("--version prints the package version", async () => {
    const { version } = JSON.parse(await readFile(join(ROOT, "package.json"), "utf8")) as { version: string };
    const r = await runCli(["--version"]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(version);
  });
});

describe("a relative data_dir from another directory (17.12)", () => {
  it("a read-only command refuses to create a new embedded database, and says where it looked", async () => {
    const confDir = join(dir, "etc");
    const elsewhere = join(dir, "elsewhere");
    await mkdir(confDir);
    await mkdir(elsewhere);
    const conf = join(confDir, "stock-sync.yaml");
    await writeFile(conf, `database:\n  data_dir: ./data\n`);
    for (const args of [["status"], ["deliveries"], ["snapshot", "--dry-run"], ["pause", "nope"]]) {
      const r = await runCli(["--config", conf, ...args], { cwd: elsewhere });
      if (args[0] === "pause") continue; // an unknown name is refused first
      expect(r.code, args.join(" ")).toBe(1);
      oneLine(r.stderr);
      expect(r.stderr).toContain(`no embedded database in ${join(elsewhere, "data")}`);
      expect(r.stderr).toContain("relative to the working directory");
    }
    expect(existsSync(join(elsewhere, "data"))).toBe(false);
  }, 120_000);
});

describe.skipIf(!inject("pgTemplate"))("status from the command line (17.16)", () => {
  let t: TestDb & { drop(keep?: boolean): Promise<void> };
  beforeAll(async () => {
    t = await createTestDb("postgres");
  });
  afterAll(async () => {
    await t?.drop();
  });

  it("fills next_full and next_delta from the config's schedules", async () => {
    const conf = join(dir, "pg.yaml");
    await writeFile(
      conf,
      `database:\n  url: "${t.url}"\nsource:\n  url: "${t.url}"\nstock:\n  full: { schedule: "0 3 * * *" }\n  delta: { schedule: "*/5 * * * *" }\n`,
    );
    const before = Date.now();
    const r = await runCli(["--config", conf, "status", "--json"]);
    expect(r.code).toBe(0);
    const { stock } = JSON.parse(r.stdout) as { stock: { next_full: string; next_delta: string } };
    const full = new Date(stock.next_full);
    const delta = new Date(stock.next_delta);
    expect(full.getTime()).toBeGreaterThan(before);
    expect(full.getTime() - before).toBeLessThanOrEqual(24 * 3600_000);
    expect([full.getHours(), full.getMinutes()]).toEqual([3, 0]);
    expect(delta.getTime()).toBeGreaterThan(before);
    expect(delta.getTime() - before).toBeLessThanOrEqual(5 * 60_000);
    expect(delta.getMinutes() % 5).toBe(0);
  }, 60_000);

  it("replay of an id that names nothing, or nothing dead or failed, is exit 1 with the API's words (17.9)", async () => {
    const conf = join(dir, "pg-replay.yaml");
    await writeFile(
      conf,
      `database:\n  url: "${t.url}"\nsource:\n  url: "${t.url}"\nsubscriptions:\n  - name: oms\n    subjects: [order.created]\n    url: "file://${dir}/out"\n`,
    );
    const missing = await runCli(["--config", conf, "replay", "999999999"]);
    expect(missing.code).toBe(1);
    oneLine(missing.stderr);
    expect(missing.stderr).toContain('no delivery or message with id "999999999"');
    await t.db.query(
      `insert into stock_sync.messages (id, subject, payload, content_type) values ('m-ok', 'order.created', '\\x7b7d', 'application/json');
       insert into stock_sync.deliveries (message_id, subscription, status) values ('m-ok', 'oms', 'delivered')`,
    );
    const delivered = await runCli(["--config", conf, "replay", "m-ok"]);
    expect(delivered.code).toBe(1);
    expect(delivered.stderr).toContain("only dead or failed deliveries are replayed; this one is delivered");
  }, 60_000);
});
