import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { openPostgres } from "../../src/db/pg.js";
import { insertBacklog } from "../helpers/backlog.js";
import { startCli } from "../helpers/cli.js";
import { createTestDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { crashStateDb } from "../helpers/engine-process.js";
import { startReceiver } from "../helpers/receiver.js";
import { withAdmin } from "../helpers/pg-admin.js";

const CONCURRENCY = 8;
/** The lease is 60 s: a takeover that waited for its expiry would take longer than this. */
const TAKEOVER_MS = 20_000;

describe("kill -9 while delivering, then restart", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "stock-sync-crash-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  for (const backend of ["postgres", "pglite"] as const) {
    const total = backend === "postgres" ? 10_000 : 1_000;
    const skip = backend === "postgres" && !inject("pgTemplate");
    it.skipIf(skip)(
      `[${backend}] delivers all ${total}; a same-host takeover without waiting for the lease; duplicates only of what was in flight at the kill`,
      async () => {
        const receiver = await startReceiver();
        const stateDb = await crashStateDb(backend, dir);
        const config = await stateDb.writeConfig(
          `  - name: bulk\n    subjects: ["order.*"]\n    url: "${receiver.url}"\n    concurrency: ${CONCURRENCY}\n    timeout: 5s\n`,
        );
        const first = await startCli(["--config", config], { timeoutMs: 60_000 });
        // Reach the state database as another process would.
        const stateUrl = () => stateDb.stateUrl();
        const client = openPostgres(await stateUrl(), { poolSize: 1 });
        try {
          await insertBacklog(client, { tag: "crash", n: total, subscriptions: ["bulk"] });
          await client.close();
          await receiver.waitFor(Math.floor(total * 0.3), 60_000);
          const killedAt = Date.now();
          first.child.kill("SIGKILL");
          await new Promise((r) => first.child.once("exit", r));
          const atKill = receiver.requests.length;
          const receivedBeforeKill = new Set(receiver.requests.map((q) => q.headers["webhook-id"]!));
          const second = await startCli(["--config", config], { timeoutMs: 60_000 });
          const secondStarted = Date.now();
          try {
            // Same host, dead pid: the lease is taken over at once, not after its 60 s expiry.
            await receiver.waitFor(atKill + 1, TAKEOVER_MS);
            expect(Date.now() - secondStarted).toBeLessThan(TAKEOVER_MS);
            const distinctIds = () => new Set(receiver.requests.map((q) => q.headers["webhook-id"]!));
            await waitUntil(async () => distinctIds().size === total, 120_000, "every message delivered");
            // The state database agrees: every delivery delivered, nothing else.
            const state = openPostgres(await stateUrl(), { poolSize: 1 });
            let inFlightAtKill: Set<string>;
            try {
              await waitUntil(
                async () => {
                  const { rows } = await state.query<{ n: number }>(
                    "select count(*)::int as n from stock_sync.deliveries where status = 'delivered'",
                  );
                  return rows[0]!.n === total;
                },
                30_000,
                "every delivery recorded as delivered",
              );
              const { rows } = await state.query<{ status: string; n: number }>(
                "select status, count(*)::int as n from stock_sync.deliveries group by 1",
              );
              expect(rows).toEqual([{ status: "delivered", n: total }]);
              // In flight at the kill: received before it, with no attempt recorded before it.
              const { rows: recorded } = await state.query<{ id: string }>(
                `select distinct d.message_id as id from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id
                 where a.attempted_at < $1`,
                [new Date(killedAt)],
              );
              const recordedBeforeKill = new Set(recorded.map((r) => r.id));
              inFlightAtKill = new Set([...receivedBeforeKill].filter((id) => !recordedBeforeKill.has(id)));
            } finally {
              await state.close();
            }
            const ids = receiver.requests.map((q) => q.headers["webhook-id"]!);
            expect(distinctIds().size).toBe(total);
            expect(atKill).toBeLessThan(total);
            // sent and not recorded at the kill: ≤ concurrency requests + ≤ concurrency answers being recorded
            expect(inFlightAtKill.size).toBeLessThanOrEqual(2 * CONCURRENCY);
            // Every duplicate is a message that was in flight at the kill, sent again once with its id.
            const duplicates = ids.filter((id, i) => ids.indexOf(id) !== i);
            expect(duplicates.filter((id) => !inFlightAtKill.has(id))).toEqual([]);
            expect(duplicates.length).toBeLessThanOrEqual(inFlightAtKill.size);
          } finally {
            await second.stop("SIGTERM");
          }
        } finally {
          await first.stop("SIGKILL");
          await receiver.close();
          await stateDb.drop();
        }
      },
      240_000,
    );
  }
});

const DROPPED_TOTAL = 1000;

describe.skipIf(!inject("pgTemplate"))(
  "PostgreSQL connections dropped mid-delivery (as in a server restart)",
  () => {
    it("keeps running and delivers everything", async () => {
      const t = await createTestDb("postgres");
      const receiver = await startReceiver();
      const name = new URL(t.url!).pathname.slice(1);
      const e = await startEngine(
        t.db,
        testConfig(
          `subscriptions:\n  - name: bulk\n    subjects: ["order.*"]\n    url: "${receiver.url}"\n    concurrency: 4\n    retry_intervals: [0.1, 0.1, 0.1, 0.1, 0.1]\n`,
        ),
      );
      try {
        // enough that both drops land mid-delivery (at 15% and 45%); more proves nothing more
        await insertBacklog(t.db, { tag: "crash", n: DROPPED_TOTAL, subscriptions: ["bulk"] });
        for (const at of [150, 450]) {
          await receiver.waitFor(at, 30_000);
          await withAdmin((c) =>
            c.query(
              `select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()`,
              [name],
            ),
          );
        }
        await waitUntil(
          async () => {
            // the test's own reads share the engine's pool: a connection the terminate killed
            // while idle fails the first query that takes it (seen once), which is not the engine
            const n = await t.db
              .query<{ n: number }>(
                "select count(*)::int as n from stock_sync.deliveries where status = 'delivered'",
              )
              .then(
                (r) => r.rows[0]!.n,
                (err: Error) => {
                  if (!/state database unavailable/.test(err.message)) throw err;
                  return -1;
                },
              );
            return n === DROPPED_TOTAL;
          },
          60_000,
          "all delivered after the connections dropped",
        );
        expect(new Set(receiver.requests.map((q) => q.headers["webhook-id"])).size).toBe(DROPPED_TOTAL);
      } finally {
        await e.stop();
        await receiver.close();
        await t.drop();
      }
    }, 120_000);
  },
);
