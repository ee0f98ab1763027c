import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { ROOT, runCli, startCli } from "../helpers/cli.js";
import { migratedDataDir } from "../helpers/data-dir.js";
import { createTestDb, type TestDb } from "../helpers/db.js";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "stock-sync-cli-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function config(name: string, yaml: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, yaml);
  return path;
}

const noStack = (s: string) => expect(s).not.toMatch(/\n\s+at /);

describe("stock-sync CLI: config and exit codes", () => {
  it("config check prints the shipped config with secrets redacted", async () => {
    const secret = "whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0";
    const r = await runCli(["config", "check"], {
      env: { OMS_WEBHOOK_SECRET: secret, STOCK_SYNC_ADMIN_TOKEN: "admin-token-1234" },
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("oms-stock");
    expect(r.stdout).toContain("erp-orders");
    expect(r.stdout + r.stderr).not.toContain(secret);
    expect(r.stdout + r.stderr).not.toContain("admin-token-123");
  });

  it("a misspelled key is a one-line error naming it, exit 2", async () => {
    const path = await config("typo.yaml", "server:\n  prot: 8080\n");
    const r = await runCli(["--config", path, "config", "check"]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("server.prot");
    noStack(r.stderr);
  });

  it("a wrong type is a one-line error naming the path, exit 2", async () => {
    const path = await config("type.yaml", "stock:\n  format:\n    part_rows: many\n");
    const r = await runCli(["--config", path, "migrate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("stock.format.part_rows");
    noStack(r.stderr);
  });

  it("a missing config file is exit 2", async () => {
    const r = await runCli(["--config", join(dir, "nope.yaml"), "config", "check"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("config file not found");
  });

  it("an unreachable database.url is a one-line error, exit 1", async () => {
    const path = await config(
      "down.yaml",
      'database:\n  url: "postgres://postgres:pw@127.0.0.1:9/none"\nsource:\n  demo: true\n',
    );
    const r = await runCli(["--config", path, "migrate"]);
    expect(r.code).toBe(1);
    expect(
      r.stderr
        .trim()
        .split("\n")
        .filter((l) => l.startsWith("stock-sync:")),
    ).toHaveLength(1);
    expect(r.stderr).toMatch(/unavailable|ECONNREFUSED/);
    expect(r.stderr).not.toContain(":pw@");
    noStack(r.stderr);
  });

  // The SQL it prints on a real source is checked in capture-install.test.ts.
  it("source install checks the source's catalogue before printing anything: exit 2 naming each missing table", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "stock-sync-install-"));
    try {
      await migratedDataDir(join(dataDir, "data")); // created beforehand: the catalogue check is the claim
      const path = await config("install.yaml", `database:\n  data_dir: ${dataDir}/data\n`);
      const r = await runCli(["--config", path, "source", "install"]);
      expect(r.code).toBe(2);
      expect(r.stdout).not.toContain("create trigger");
      expect(r.stderr).toContain(
        "stock.capture.tables[0]: table inventory.stock_on_hand does not exist on the source",
      );
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it("bad usage is exit 2", async () => {
    const r = await runCli(["no-such-command"]);
    expect(r.code).toBe(2);
  });
});

describe("stock-sync start on the embedded default", () => {
  it("serves /readyz, answers a second process, stops on SIGINT with 0 and reuses its data", async () => {
    const dataDir = join(dir, "data");
    // The shipped config, with its data and drop folders moved into the test's directory.
    const shipped = await readFile(join(ROOT, "config/stock-sync.yaml"), "utf8");
    const path = await config(
      "embedded.yaml",
      shipped
        .replace("data_dir: ./data", `data_dir: ${dataDir}`)
        .replace("port: 8080", "port: 0")
        .replaceAll("file://./out/", `file://${dir}/out/`),
    );
    const first = await startCli(["--config", path]);
    try {
      expect(first.output().stderr).toContain("demo inventory loaded");
      expect((await fetch(`${first.url}/readyz`)).status).toBe(200);
      expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
      // A second process on the same config reaches the running connector's embedded database.
      const migrate = await runCli(["--config", path, "migrate"]);
      expect(migrate.stderr).toBe("");
      expect(migrate.code).toBe(0);
      expect(migrate.stdout).toContain("up to date");
      // Pause and status from another process reach the same embedded database.
      const pause = await runCli(["--config", path, "pause", "erp-orders"]);
      expect(pause.stderr).toBe("");
      expect(pause.code).toBe(0);
      expect(pause.stdout).toContain("erp-orders: paused");
      const status = await runCli(["--config", path, "status", "--json"]);
      expect(status.code).toBe(0);
      const subs = JSON.parse(status.stdout).subscriptions as { name: string; status: string }[];
      expect(subs.find((s) => s.name === "erp-orders")?.status).toBe("paused");
      expect(subs.find((s) => s.name === "oms-stock")?.status).toBe("enabled");
      expect((await runCli(["--config", path, "pause", "no-such"])).code).toBe(1);
      // Stock commands from another process: a CSV on stdout, a dry run, a delta.
      const csv = await runCli(["--config", path, "snapshot", "--out", "-"]);
      expect(csv.code).toBe(0);
      const lines = csv.stdout.trim().split("\n");
      expect(lines[0]).toBe("sku,location,quantity");
      expect(lines.length).toBeGreaterThan(1000);
      expect(csv.stderr).toMatch(/full snapshot: \d+ rows.*written/);
      const dry = await runCli(["--config", path, "snapshot", "--dry-run"]);
      expect(dry.stdout).toMatch(/full snapshot: \d+ rows, 1 part\(s\).*dry run/);
      const delta = await runCli(["--config", path, "delta"]);
      expect(delta.code).toBe(0);
      expect(delta.stdout).toMatch(/^delta: \d+ rows/);
      // how fast it stops is a speed (npm run bench); here: it stops cleanly on SIGINT
      expect(await first.stop("SIGINT")).toBe(0);
    } finally {
      await first.stop("SIGKILL");
    }
    const second = await startCli(["--config", path]);
    try {
      expect(second.output().stderr).not.toContain("demo inventory loaded");
      expect((await fetch(`${second.url}/readyz`)).status).toBe(200);
    } finally {
      expect(await second.stop("SIGTERM")).toBe(0);
    }
  }, 90_000); // two embedded starts (PGlite boots and loads the demo): slow on a loaded machine
});

describe.skipIf(!inject("pgTemplate"))("stock-sync start on real PostgreSQL", () => {
  let t: TestDb & { drop(keep?: boolean): Promise<void> };
  beforeAll(async () => {
    t = await createTestDb("postgres");
  });
  afterAll(async () => {
    await t?.drop();
  });

  it("serves /readyz against database.url and stops cleanly", async () => {
    const path = await config(
      "pg.yaml",
      `database:\n  url: "${t.url}"\nsource:\n  demo: true\nserver:\n  port: 0\n`,
    );
    const running = await startCli(["--config", path]);
    try {
      expect((await fetch(`${running.url}/readyz`)).status).toBe(200);
    } finally {
      expect(await running.stop("SIGTERM")).toBe(0);
    }
  });
});
