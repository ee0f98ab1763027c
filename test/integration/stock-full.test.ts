import pg from "pg";
import { expect, it } from "vitest";
import { keyOf } from "../../src/export/diff.js";
import type { RunResult } from "../../src/export/run.js";
import { createExporter } from "../../src/export/exporter.js";
import { allSent } from "../../src/export/state.js";
import { describeEachDb } from "../helpers/db.js";
import { seededRandom } from "../helpers/random.js";
import { startEngine, waitUntil } from "../helpers/engine.js";
import { gate, spyDb } from "../helpers/spy-db.js";
import { startReceiver } from "../helpers/receiver.js";
import {
  applyToOms,
  sourceTruth,
  STOCK_SUB,
  stockFixture,
  stockMessages,
  withoutZeros,
} from "../helpers/stock.js";

describeEachDb("stock full snapshots", (t) => {
  const db = () => t().db;

  it("a start-up full is skipped when another process enqueued one meanwhile (checked under the lock)", async () => {
    const fx = await stockFixture(db());
    // Two processes started together, both saw no full. The second reaches the stock lock first
    // and is held there (a slow connection) until the first has taken the lock, sent its full and
    // released it; then the second takes the lock and must see that full. A check made before
    // the lock saw none and would send a second full.
    const held = gate();
    let atLock = false;
    const slowDb = spyDb(db(), {
      before: (text) => {
        if (!text.includes("stock_sync.stock_lock set owner = $1") || atLock) return undefined;
        atLock = true;
        return held.promise;
      },
    });
    const second = createExporter({ ...fx.deps, db: slowDb, source: slowDb });
    const startup = { trigger: "start", unlessFullWithinMs: 3_600_000 } as const;
    const secondRun = second.run("full", startup);
    await waitUntil(async () => atLock, 10_000, "the second process at the stock lock");
    expect((await fx.exporter.run("full", startup)).status).toBe("enqueued");
    held.open();
    expect(await secondRun).toMatchObject({ status: "skipped", detail: "a full was enqueued meanwhile" });
    const { rows: fulls } = await db().query("select id from stock_sync.stock_runs where kind = 'full'");
    expect(fulls).toHaveLength(1);
    // once it is older than the period, a start-up full runs again
    await db().query("update stock_sync.stock_runs set finished_at = finished_at - interval '2 hours'");
    expect((await fx.exporter.run("full", startup)).status).toBe("enqueued");
  });

  it("a transaction that began before a delta and committed after it appears in a later delta", async ({
    skip,
  }) => {
    if (!t().url)
      return skip("PGlite runs one transaction at a time: there is no concurrent transaction to test");
    const fx = await stockFixture(db());
    await fx.exporter.run("full", { trigger: "test" });
    const { rows } = await db().query<{ sku: string; location: string }>(
      "select sku, location from inventory.stock_on_hand where quantity > 40 order by sku limit 1",
    );
    const k = rows[0]!;
    const slow = new pg.Client({ connectionString: t().url! });
    await slow.connect();
    try {
      await slow.query("begin");
      await slow.query(
        "update inventory.stock_on_hand set quantity = quantity + 25 where sku = $1 and location = $2",
        [k.sku, k.location],
      );
      expect((await fx.exporter.run("delta", { trigger: "test" })).status).toBe("empty"); // not committed yet
      await slow.query("commit");
    } finally {
      await slow.end();
    }
    await fx.exporter.run("delta", { trigger: "test" });
    const last = (await stockMessages(db())).at(-1)!;
    expect(last.kind).toBe("delta");
    expect(last.rows.map((r) => r.sku)).toContain(k.sku);
  });

  it("is consistent while 10k concurrent updates and deletes move stock around", async ({ skip }) => {
    if (!t().url) return skip("PGlite runs one transaction at a time: nothing can run concurrently");
    await db().query(`create schema if not exists moving;
      create table moving.stock (sku text, location text, qty int not null, primary key (sku, location));
      insert into moving.stock select 'S' || g, 'L' || (g % 7), 100 from generate_series(1, 3000) g;`);
    const yaml = `${STOCK_SUB}stock:\n  format: { part_rows: 700 }\n  capture: { mode: full_diff }\n  queries:\n    sellable: "select sku, location, qty as quantity from moving.stock where $1::int >= 0 order by sku"\n    sellable_keys: "select sku, location, qty as quantity from moving.stock where (sku, location) in (select * from unnest($2::text[], $3::text[]))"\n    time_candidates: none\n`;
    const fx = await stockFixture(db(), yaml, { seed: false });
    // Four writers; each statement is one transaction that keeps the total at 300,000: a transfer
    // between two keys, or (one in ten) a delete that hands the row's quantity to another key.
    const transfer = `with b as (select 1 from moving.stock where sku = $2 for update),
      a as (update moving.stock set qty = qty - 1 where sku = $1 and exists (select 1 from b) returning 1)
      update moving.stock set qty = qty + 1 where sku = $2 and exists (select 1 from a)`;
    const remove = `with b as (select 1 from moving.stock where sku = $2 for update),
      d as (delete from moving.stock where sku = $1 and exists (select 1 from b) returning qty)
      update moving.stock set qty = qty + (select qty from d) where sku = $2 and exists (select 1 from d)`;
    let done = 0;
    const written = { ok: 0, moved: 0, failed: 0 }; // statements committed, of which moved stock, rolled back
    const rand = seededRandom("stock-full 10k writers");
    const writers = await Promise.all(
      [0, 1, 2, 3].map(async () => {
        const c = new pg.Client({ connectionString: t().url! });
        await c.connect();
        return c;
      }),
    );
    const churn = Promise.all(
      writers.map(async (c) => {
        while (done < 10_000) {
          const a = `S${1 + Math.floor(rand() * 3000)}`;
          const b = `S${1 + Math.floor(rand() * 3000)}`;
          if (a === b) continue;
          done++;
          try {
            const r = await c.query(done % 10 === 0 ? remove : transfer, [a, b]);
            written.ok++;
            written.moved += r.rowCount ?? 0;
          } catch {
            written.failed++; // a deadlock: rolled back, the total unchanged
          }
        }
      }),
    );
    let fulls = 0;
    const fullRuns: number[] = [];
    try {
      while (done < 10_000) {
        const full = await fx.exporter.run("full", { trigger: "test", force: true });
        expect(full.status).toBe("enqueued");
        fullRuns.push((full as RunResult).runId!);
        fulls++;
      }
    } finally {
      await churn;
      await Promise.all(writers.map((c) => c.end()));
    }
    expect(fulls).toBeGreaterThanOrEqual(2);
    // The writers really moved stock while the fulls ran: deadlocks are rare, and a transfer
    // between two keys that still exist (most of them; one in ten statements deletes one) moves.
    expect(written.ok + written.failed).toBe(10_000);
    expect(written.ok).toBeGreaterThanOrEqual(9_500);
    expect(written.moved).toBeGreaterThanOrEqual(5_000);
    // Every full (superseded ones too) is one consistent snapshot: 300,000 in all.
    const { rows: parts } = await db().query<{ run_id: string; payload: Uint8Array }>(
      `select m.run_id, m.payload from stock_sync.messages m join stock_sync.deliveries d on d.message_id = m.id
       where d.subscription = 'oms' and m.run_id = any($1::int8[])`,
      [fullRuns],
    );
    const totals = new Map<string, number>();
    for (const p of parts) {
      const rows = Buffer.from(p.payload).toString("utf8").trim().split("\n").slice(1);
      const sum = rows.reduce((n, l) => n + Number(l.split(",")[2]), 0);
      totals.set(String(p.run_id), (totals.get(String(p.run_id)) ?? 0) + sum);
    }
    expect(totals.size).toBe(fulls);
    expect([...totals.values()]).toEqual(Array(fulls).fill(300_000));
    const msgs = await stockMessages(db(), "oms", ["pending"]);
    expect(msgs.length).toBeGreaterThan(1); // several parts of the last full
    const { rows } = await db().query<{ total: number }>("select sum(qty)::int as total from moving.stock");
    expect(rows[0]!.total).toBe(300_000);
  }, 180_000);

  it("refuses a full that shrinks too much or is empty, notifies, and --force overrides", async () => {
    const fx = await stockFixture(
      db(),
      `${STOCK_SUB}notifications:\n  on_failure: ["http://127.0.0.1:9/alerts"]\n`,
    );
    await fx.exporter.run("full", { trigger: "test", force: true });
    await db().query("update stock_sync.deliveries set status = 'delivered'"); // the OMS has it
    await db().query(
      "delete from inventory.stock_on_hand where (sku, location) in (select sku, location from inventory.stock_on_hand order by sku limit 600)",
    );
    const refused = await fx.exporter.run("full", { trigger: "test" });
    expect(refused).toMatchObject({ status: "refused" });
    expect("detail" in refused && refused.detail).toMatch(/more than stock.guard.max_drop_ratio 0.2/);
    const { rows } = await db().query<{ subject: string }>(
      "select m.subject from stock_sync.messages m join stock_sync.deliveries d on d.message_id = m.id where d.subscription like 'notify:%'",
    );
    expect(rows.map((r) => r.subject)).toContain("ops.snapshot.refused");
    expect((await fx.exporter.run("full", { trigger: "test", force: true })).status).toBe("enqueued");
    await db().query("delete from inventory.stock_on_hand; delete from inventory.incoming_stock");
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("refused");
  });

  it("a newer full supersedes undelivered older stock messages; sequences only grow", async () => {
    await db().query(
      "truncate stock_sync.stock_sent; delete from stock_sync.deliveries; delete from stock_sync.stock_watermark",
    );
    const fx = await stockFixture(db(), STOCK_SUB, { seed: false });
    await db().query(
      "insert into inventory.stock_on_hand (sku, location, quantity) select sku, 'WH-PAR', 40 from inventory.items where active limit 50 on conflict do nothing",
    );
    await fx.exporter.run("full", { trigger: "test", force: true });
    await db().query("update inventory.stock_on_hand set quantity = quantity + 1 where location = 'WH-PAR'");
    await fx.exporter.run("delta", { trigger: "test" });
    await fx.exporter.run("full", { trigger: "test", force: true });
    const { rows } = await db().query<{ status: string; kind: string; sequence: number }>(
      `select d.status, m.headers->>'stock-sync-kind' as kind, d.sequence from stock_sync.deliveries d
       join stock_sync.messages m on m.id = d.message_id where d.subscription = 'oms' order by d.id`,
    );
    expect(rows.map((r) => [r.kind, r.status])).toEqual([
      ["full", "superseded"],
      ["delta", "superseded"],
      ["full", "pending"],
    ]);
    const seqs = rows.map((r) => Number(r.sequence));
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  });

  it("through a receiver outage and a newer full, the OMS ends with the source's values, never an older one", async () => {
    // Its own data (no earlier test's): 1,000 keys in 3 parts of 400, changed by a seeded PRNG.
    const rand = seededRandom("stock-full outage");
    await db().query(`truncate stock_sync.stock_sent; delete from stock_sync.deliveries; delete from stock_sync.stock_watermark;
      drop schema if exists outage cascade; create schema outage;
      create table outage.stock (sku text, location text, qty int not null, primary key (sku, location));
      insert into outage.stock select 'S' || g, 'L' || (g % 4), 10 + g % 50 from generate_series(1, 1000) g;`);
    let up = true;
    const applied: { seq: number; kind: string; body: string; part: string }[] = [];
    const refusedSeqs = new Set<number>(); // what reached the receiver while it was down
    const receiver = await startReceiver((req) => {
      const seq = Number(req.headers["stock-sync-sequence"]);
      if (!up) {
        refusedSeqs.add(seq);
        return { status: 503 };
      }
      applied.push({
        seq,
        kind: req.headers["stock-sync-kind"]!,
        part: req.headers["stock-sync-part"]!,
        body: req.body.toString(),
      });
      return { status: 204 };
    });
    // Retries every 3 s: the newer full is made between two attempts (an attempt in flight while
    // it supersedes is the defect tested below), and 20 of them: the outage makes nothing dead.
    const retry = Array(20).fill(3).join(", ");
    const sellable = "select sku, location, qty as quantity from outage.stock where $1::int >= 0";
    const keys = `${sellable} and (sku, location) in (select * from unnest($2::text[], $3::text[]))`;
    const yaml = `subscriptions:\n  - name: oms\n    subjects: [stock.full, stock.delta]\n    url: "${receiver.url}"\n    retry_intervals: [${retry}]\nstock:\n  format: { part_rows: 400 }\n  capture: { mode: full_diff }\n  queries:\n    sellable: "${sellable}"\n    sellable_keys: "${keys}"\n    time_candidates: none\n`;
    const fx = await stockFixture(db(), yaml, { seed: false });
    const engine = await startEngine(db(), fx.config);
    const bump = () => {
      const skus = Array.from({ length: 20 }, () => `S${1 + Math.floor(rand() * 1000)}`);
      return db().query("update outage.stock set qty = qty + 1 where sku = any($1::text[])", [skus]);
    };
    const owed = async () => {
      const { rows } = await db().query<{ n: number }>(
        "select count(*)::int as n from stock_sync.deliveries where subscription = 'oms' and status in ('pending', 'failed')",
      );
      return rows[0]!.n === 0;
    };
    const run = async (kind: "full" | "delta") => {
      const r = (await fx.exporter.run(kind, { trigger: "test", force: kind === "full" })) as RunResult;
      expect(r.status).toBe("enqueued");
      return r.runId!;
    };
    let staleRuns: number[] = [];
    try {
      const firstFull = await run("full");
      expect(firstFull).toBeGreaterThan(0);
      await bump();
      await run("delta");
      await waitUntil(owed, 20_000, "the first full and delta delivered");
      up = false;
      for (let i = 0; i < 3; i++) {
        await bump();
        staleRuns.push(await run("delta"));
      }
      // the outage is real: the first stale delta was tried, refused, and waits for its retry
      await waitUntil(
        async () => {
          const { rows } = await db().query<{ n: number }>(
            `select count(*)::int as n from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
             where m.run_id = $1 and d.status = 'failed' and d.next_attempt_at > now() + interval '2 seconds'`,
            [staleRuns[0]],
          );
          return rows[0]!.n === 1;
        },
        10_000,
        "a delta refused by the receiver",
      );
      expect(refusedSeqs.size).toBe(1);
      await run("full");
      await bump();
      await run("delta");
      up = true;
      await waitUntil(owed, 20_000, "stock delivered");
    } finally {
      await engine.stop();
      await receiver.close();
    }
    // The deltas between the two fulls were superseded and never accepted by the receiver.
    const { rows: stale } = await db().query<{ status: string; sequence: string }>(
      `select d.status, d.sequence from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
       where d.subscription = 'oms' and m.run_id = any($1::int8[]) order by d.sequence`,
      [staleRuns],
    );
    expect(stale.map((r) => r.status)).toEqual(["superseded", "superseded", "superseded"]);
    const staleSeqs = stale.map((r) => Number(r.sequence));
    expect(applied.filter((a) => staleSeqs.includes(a.seq))).toEqual([]);
    const { rows: statuses } = await db().query<{ status: string; n: number }>(
      "select status, count(*)::int as n from stock_sync.deliveries where subscription = 'oms' group by 1 order by 1",
    );
    // first full (3 parts) + delta, second full (3 parts) + delta delivered; three superseded
    expect(statuses).toEqual([
      { status: "delivered", n: 8 },
      { status: "superseded", n: 3 },
    ]);
    staleRuns = [];
    const seqs = applied.map((a) => a.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b)); // strictly in order...
    expect(new Set(seqs).size).toBe(seqs.length); // ...and each once
    const oms = applyToOms(
      applied.map((a) => ({
        kind: a.kind,
        sequence: a.seq,
        part: a.part,
        rows: a.body
          .trim()
          .split("\n")
          .slice(1)
          .map((l) => {
            const [sku, location, quantity] = l.split(",");
            return { sku: sku!, location: location!, quantity: Number(quantity) };
          }),
      })),
    );
    expect(oms).toEqual(withoutZeros(await sourceTruth(db(), sellable)));
  });

  // Was a defect (pinned with it.fails by issue 19): the outcome was written whatever the
  // delivery's status meanwhile. Outcome writes are now fenced (src/outbox/outcome.ts fence()).
  it("a delta whose attempt is in flight while a newer full supersedes it stays superseded, and its late outcome is not written", async () => {
    await db().query(`truncate stock_sync.stock_sent; delete from stock_sync.deliveries; delete from stock_sync.stock_watermark;
      drop schema if exists inflight cascade; create schema inflight;
      create table inflight.stock (sku text, location text, qty int not null, primary key (sku, location));
      insert into inflight.stock select 'S' || g, 'L1', g from generate_series(1, 100) g;`);
    let held = 0;
    const receiver = await startReceiver((req) => {
      if (req.headers["stock-sync-kind"] !== "delta") return { status: 204 };
      held++;
      return { status: 503, delayMs: held === 1 ? 60_000 : 0 };
    });
    const sellable = "select sku, location, qty as quantity from inflight.stock where $1::int >= 0";
    const keys =
      "select sku, location, qty as quantity from inflight.stock where (sku, location) in (select * from unnest($2::text[], $3::text[]))";
    const yaml = `subscriptions:\n  - name: oms\n    subjects: [stock.full, stock.delta]\n    url: "${receiver.url}"\n    timeout: 20s\n    retry_intervals: [0.1, 0.1, 0.1, 0.1, 0.1]\nstock:\n  capture: { mode: full_diff }\n  queries:\n    sellable: "${sellable}"\n    sellable_keys: "${keys}"\n    time_candidates: none\n`;
    const fx = await stockFixture(db(), yaml, { seed: false });
    const engine = await startEngine(db(), fx.config);
    let delta: RunResult;
    try {
      await fx.exporter.run("full", { trigger: "test", force: true });
      await db().query("update inflight.stock set qty = qty + 1 where sku = 'S7'");
      delta = (await fx.exporter.run("delta", { trigger: "test" })) as RunResult;
      await waitUntil(async () => held === 1, 10_000, "the delta's attempt in flight");
      await fx.exporter.run("full", { trigger: "test", force: true }); // supersedes the delta
      await receiver.close(); // the attempt in flight ends (a network error): a late failure
      await engine.stop(); // returns once every outcome was written or fenced off
    } finally {
      await engine.stop();
      await receiver.close();
    }
    const { rows } = await db().query<{ status: string }>(
      "select d.status from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id where m.run_id = $1",
      [delta!.runId],
    );
    expect(rows.map((r) => r.status)).toEqual(["superseded"]);
    const attempts = await db().query(
      "select 1 from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id join stock_sync.messages m on m.id = d.message_id where m.run_id = $1",
      [delta!.runId],
    );
    expect(attempts.rows).toEqual([]);
  });

  it.each([
    ["plain parts", "{ part_rows: 300 }"],
    ["gzip parts, columns reordered", "{ part_rows: 300, gzip: true, columns: [quantity, location, sku] }"],
  ])(
    "after a full the sent state is the source, key for key, gone and new keys too (%s)",
    async (_, format) => {
      await db().query(`truncate stock_sync.stock_sent; drop schema if exists probe cascade; create schema probe;
      create table probe.stock (sku text, location text, qty int not null, primary key (sku, location));
      insert into probe.stock select 'S' || g, 'L' || (g % 5), g % 11 from generate_series(1, 1000) g;
      insert into probe.stock values ('', 'L0', 4), ('a,"b"|', e'L\n2', 7), ('ü', ' L ', 0);`);
      const yaml = `${STOCK_SUB}stock:\n  format: ${format}\n  capture: { mode: full_diff }\n  queries:\n    sellable: "select sku, location, qty as quantity from probe.stock where $1::int >= 0"\n    sellable_keys: "select sku, location, qty as quantity from probe.stock where (sku, location) in (select * from unnest($2::text[], $3::text[]))"\n    time_candidates: none\n`;
      const fx = await stockFixture(db(), yaml, { seed: false });
      const truth = async () => {
        const { rows } = await db().query<{ sku: string; location: string; qty: number }>(
          "select sku, location, qty from probe.stock",
        );
        return new Map(rows.map((r) => [keyOf(r.sku, r.location), r.qty]));
      };
      const first = (await fx.exporter.run("full", { trigger: "test", force: true })) as RunResult;
      expect(await allSent(db())).toEqual(await truth());
      await db().query(`delete from probe.stock where qty = 3;
      update probe.stock set qty = qty + 100 where qty = 5;
      insert into probe.stock select 'N' || g, 'L1', g from generate_series(1, 50) g`);
      const second = (await fx.exporter.run("full", { trigger: "test", force: true })) as RunResult;
      expect(await allSent(db())).toEqual(await truth());
      // Changed and new keys are recorded as sent by the second full; unchanged ones by the first.
      const { rows } = await db().query<{ changed: boolean; run_id: number; n: number }>(
        `select (s.sku like 'N%' or s.quantity > 100) as changed, s.run_id, count(*)::int as n
       from stock_sync.stock_sent s group by 1, 2 order by 1, 2`,
      );
      expect(rows).toEqual([
        { changed: false, run_id: first.runId, n: 1003 - 91 - 91 }, // all but the deleted (qty 3) and changed (qty 5)
        { changed: true, run_id: second.runId, n: 91 + 50 },
      ]);
    },
  );
});
