import { afterEach, expect, it } from "vitest";
import { churnStats, needsVacuum } from "../../src/outbox/vacuum.js";
import { insertBacklog } from "../helpers/backlog.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, type TestEngine, testConfig, waitUntil } from "../helpers/engine.js";

/**
 * Issue 11.6: the outbox is a queue table. Every outcome rewrites a row (its status and due time
 * are indexed, so no update is HOT) and a replay or an outage can leave hundreds of thousands of
 * dead rows; PostgreSQL's default waits for 20% of the table (260,000 rows over a 1.3M outbox)
 * before vacuuming, PGlite never does, and until then every due fetch walks the dead index
 * entries (the `none` drain at 0.40× the empty table, bench `backlog`).
 */
describeEachDb("outbox vacuum", (t) => {
  let running: TestEngine | undefined;
  afterEach(async () => {
    await running?.stop();
    running = undefined;
  });

  it("deliveries, heads and attempts are vacuumed and analysed at 2% dead rows by autovacuum", async () => {
    const { rows } = await t().db.query<{ relname: string; reloptions: string[] | null }>(
      `select c.relname, c.reloptions from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = 'stock_sync' and c.relname in ('deliveries', 'attempts', 'delivery_heads')
       order by c.relname`,
    );
    expect(rows.map((r) => r.relname)).toEqual(["attempts", "deliveries", "delivery_heads"]);
    for (const r of rows) {
      expect(r.reloptions, r.relname).toEqual(
        expect.arrayContaining([
          "autovacuum_vacuum_scale_factor=0.02",
          "autovacuum_analyze_scale_factor=0.02",
        ]),
      );
    }
  });

  it("where autovacuum does not run, the engine vacuums the outbox after a mass rewrite", async () => {
    const db = t().db;
    await db.query("delete from stock_sync.messages");
    await insertBacklog(db, { tag: "vac", n: 6000, subscriptions: ["paused"] });
    // a replay-sized rewrite: every row gets a new version and new index entries
    await db.query(
      "update stock_sync.deliveries set next_attempt_at = now() + interval '1 hour', attempts = 1",
    );
    const deliveries = async () => (await churnStats(db)).tables.find((x) => x.table === "deliveries");
    // the statistics reach the view a moment after the transaction (the writer's next flush)
    await waitUntil(async () => needsVacuum((await deliveries())!), 20_000, "dead rows counted");
    // the engine's own vacuum, seen by its time (not by "few dead rows": page pruning by the
    // engine's reads lowers that count too)
    const vacuumed = async () =>
      (
        await db.query<{ at: Date | null }>(
          `select last_vacuum as at from pg_stat_user_tables where schemaname = 'stock_sync' and relname = 'deliveries'`,
        )
      ).rows[0]?.at;
    const { autovacuum } = await churnStats(db);
    const before = (await vacuumed())?.getTime() ?? 0;
    const config = testConfig(
      `subscriptions:\n  - name: paused\n    status: paused\n    subjects: ["x"]\n    url: "http://127.0.0.1:2/x"\n`,
    );
    running = await startEngine(db, config, { vacuumCheckMs: 100 });
    if (autovacuum) return; // the server's autovacuum does it, with 0011's settings
    await waitUntil(async () => ((await vacuumed())?.getTime() ?? 0) > before, 20_000, "the engine's vacuum");
  });
});
