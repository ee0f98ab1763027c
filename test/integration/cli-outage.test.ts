// Issue 17.14: with the state database down, `start` logs the outage once (then a reminder a
// minute) and the recovery, not one warning per subscription per poll.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startCli } from "../helpers/cli.js";
import { createTestDb, type TestDb } from "../helpers/db.js";
import { quoteIdent, withAdmin } from "../helpers/pg-admin.js";

const QUERY = "select 'SKU-' || g as sku, 'LOC-1' as location, g as quantity from generate_series(1, 10) g";

describe.skipIf(!inject("pgTemplate"))("start with the state database going down and back [postgres]", () => {
  let t: TestDb & { drop(keep?: boolean): Promise<void> };
  let dir: string;
  let name: string;
  const allowConnections = (allow: boolean) =>
    withAdmin(async (c) => {
      await c.query(`alter database ${quoteIdent(name)} with allow_connections ${allow}`);
      if (!allow)
        await c.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", [name]);
    });

  beforeAll(async () => {
    t = await createTestDb("postgres");
    name = new URL(t.url!).pathname.slice(1);
    dir = await mkdtemp(join(tmpdir(), "stock-sync-outage-"));
  });
  afterAll(async () => {
    await allowConnections(true).catch(() => undefined);
    await t?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it("one line for the outage, one for the recovery", async () => {
    const subs = Array.from(
      { length: 6 },
      (_, i) => `  - name: s${i}\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n`,
    ).join("");
    const config = join(dir, "c.yaml");
    await writeFile(
      config,
      `database:\n  url: "${t.url}"\n  pool_size: 4\nsource:\n  url: "${t.url}"\n` +
        `stock:\n  capture: { mode: full_diff }\n  queries:\n    sellable: "${QUERY} where $1::int >= 0"\n` +
        `    sellable_keys: "${QUERY} where $1::int >= 0 and ('SKU-' || g) = any($2::text[]) and 'LOC-1' = any($3::text[])"\n` +
        `    time_candidates: none\n` +
        `server:\n  port: 0\ndelivery:\n  poll_interval: 0.1\nlog: { format: json }\nsubscriptions:\n${subs}`,
      "utf8",
    );
    const running = await startCli(["--config", config], { timeoutMs: 60_000 });
    try {
      await new Promise((r) => setTimeout(r, 1500));
      const before = running.output().stderr.length;
      await allowConnections(false);
      await new Promise((r) => setTimeout(r, 8000));
      const during = running
        .output()
        .stderr.slice(before)
        .split("\n")
        .filter((l) => /"level":(40|50)/.test(l));
      expect(during.length, during.join("\n")).toBeGreaterThanOrEqual(1);
      expect(during.length, during.join("\n")).toBeLessThanOrEqual(2);
      expect(during[0]).toContain("state database unavailable");
      expect(during.join("\n")).not.toMatch(/\\n\s+at /); // no stack traces
      await allowConnections(true);
      const deadline = Date.now() + 20_000;
      while (!running.output().stderr.includes("state database reachable again") && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 200));
      expect(running.output().stderr).toContain("state database reachable again");
    } finally {
      await running.stop("SIGTERM");
    }
  }, 120_000);
});
