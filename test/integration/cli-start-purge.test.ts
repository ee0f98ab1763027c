// Issue 17.16: `start` purges delivered messages past the retention at once, not an hour later
// (a process restarted more often than that would never purge).
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { startCli } from "../helpers/cli.js";
import { createTestDb, type TestDb } from "../helpers/db.js";

const QUERY = "select 'SKU-' || g as sku, 'LOC-1' as location, g as quantity from generate_series(1, 10) g";

describe.skipIf(!inject("pgTemplate"))("retention purge at start [postgres]", () => {
  let t: TestDb & { drop(keep?: boolean): Promise<void> };
  let dir: string;
  beforeAll(async () => {
    t = await createTestDb("postgres");
    dir = await mkdtemp(join(tmpdir(), "stock-sync-purge-"));
  });
  afterAll(async () => {
    await t?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it("an old delivered message is gone right after start; a recent one stays", async () => {
    for (const [id, age] of [
      ["msg_old", "2 days"],
      ["msg_new", "1 hour"],
    ] as const) {
      await t.db.query(
        `insert into stock_sync.messages (id, subject, payload, content_type, created_at)
         values ($1, 'order.created', '\\x7b7d', 'application/json', now() - $2::interval)`,
        [id, age],
      );
      await t.db.query(
        `insert into stock_sync.deliveries (message_id, subscription, status, created_at, updated_at, delivered_at)
         values ($1, 's', 'delivered', now() - $2::interval, now() - $2::interval, now() - $2::interval)`,
        [id, age],
      );
    }
    const config = join(dir, "c.yaml");
    await writeFile(
      config,
      `database:\n  url: "${t.url}"\nsource:\n  url: "${t.url}"\n` +
        `stock:\n  capture: { mode: full_diff }\n  queries:\n    sellable: "${QUERY} where $1::int >= 0"\n` +
        `    sellable_keys: "${QUERY} where $1::int >= 0 and ('SKU-' || g) = any($2::text[]) and 'LOC-1' = any($3::text[])"\n` +
        `    time_candidates: none\n` +
        `server:\n  port: 0\ndelivery:\n  retention: 1d\nlog: { format: json }\n` +
        `subscriptions:\n  - name: s\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n`,
    );
    const running = await startCli(["--config", config], { timeoutMs: 60_000 });
    try {
      const ids = async () =>
        (await t.db.query<{ id: string }>("select id from stock_sync.messages order by id")).rows.map(
          (r) => r.id,
        );
      const deadline = Date.now() + 10_000;
      while ((await ids()).includes("msg_old") && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 200));
      expect(await ids()).not.toContain("msg_old");
      expect(await ids()).toContain("msg_new");
    } finally {
      await running.stop("SIGTERM");
    }
  }, 90_000);
});
