import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, expect, inject, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { openPostgres } from "../../src/db/pg.js";
import { fromRoot } from "../../src/root.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { waitUntil } from "../helpers/engine.js";
import { gate } from "../helpers/spy-db.js";
import { seededRandom } from "../helpers/random.js";
import { expectOmsEqualsSource, STOCK_SUB, stockFixture, stockMessages } from "../helpers/stock.js";

const { cleanup } = useCleanup();

/**
 * No change is lost by a delta (issue 19.7): writers with capture triggers running while deltas
 * run, a transaction open across a full and across a delta, a run killed (-9) mid-way. Each ends
 * with the OMS (full + deltas applied in order) equal to the source.
 */
describeEachDb("delta completeness under concurrency and crashes", (t) => {
  let fx: Awaited<ReturnType<typeof stockFixture>>;
  const db = () => t().db;
  const delta = () => fx.exporter.run("delta", { trigger: "test" });
  const omsEqualsSource = () => expectOmsEqualsSource(db());
  /** Another "process" writing to the source: its own pool on PostgreSQL, the one session on PGlite. */
  const otherDb = (size = 2): Db => {
    const url = t().url;
    if (!url) return db();
    const other = openPostgres(url, { poolSize: size });
    cleanup.push(() => other.close());
    return other;
  };
  /** A key whose stock row exists, its item and location active. */
  const key = async (offset: number) =>
    (
      await db().query<{ sku: string; location: string }>(
        `select s.sku, s.location from inventory.stock_on_hand s join inventory.items i using (sku)
         join inventory.locations l on l.code = s.location where i.active and l.active
         order by s.sku, s.location limit 1 offset $1`,
        [offset],
      )
    ).rows[0]!;
  const lastDeltaKeys = async () => {
    const last = (await stockMessages(db())).at(-1);
    return last?.kind === "delta" ? last.rows.map((r) => `${r.sku}|${r.location}`) : [];
  };

  const pick = seededRandom("crashed run keys");

  beforeAll(async () => {
    fx = await stockFixture(db());
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
  });

  it("writers with capture triggers committing while deltas run: every change reaches the OMS", async () => {
    const rand = seededRandom("concurrent writers during deltas");
    const writers = [otherDb(), otherDb(), otherDb()];
    // On PostgreSQL each write holds its transaction open a little, so some are in progress
    // when a delta takes its snapshot and commit after it.
    const hold = t().backend === "postgres" ? "select pg_sleep(0.03)" : "select 1";
    let done = false;
    let committed = 0;
    const write = async (w: Db, seed: number) => {
      for (let i = 0; i < 40; i++) {
        await w.tx(async (tx) => {
          await tx.query("select setseed($1)", [seed]);
          await tx.query(
            `update inventory.stock_on_hand set quantity = greatest(0, quantity + (floor(random() * 21) - 10)::int)
             where (sku, location) in (select sku, location from inventory.stock_on_hand order by random() limit 3)`,
          );
          await tx.query(hold);
        });
        committed++;
        seed = rand() * 2 - 1;
      }
    };
    const writing = Promise.all(writers.map((w) => write(w, rand() * 2 - 1))).finally(() => (done = true));
    let deltas = 0;
    while (!done) {
      const r = await delta();
      expect(r.status === "enqueued" || r.status === "empty", JSON.stringify(r)).toBe(true);
      deltas++;
    }
    await writing;
    await delta(); // after the last commit
    expect(committed).toBe(120);
    expect(deltas).toBeGreaterThan(1);
    await omsEqualsSource();
  });

  it("a transaction open across a full, and one open across a delta, are in the next delta", async () => {
    if (t().backend !== "postgres") return; // PGlite has one session: an open transaction holds it
    const other = otherDb();
    const open = async (k: { sku: string; location: string }, quantity: number) => {
      const written = gate();
      const commit = gate();
      const done = other.tx(async (tx) => {
        await tx.query("update inventory.stock_on_hand set quantity = $3 where sku = $1 and location = $2", [
          k.sku,
          k.location,
          quantity,
        ]);
        written.open();
        await commit.promise;
      });
      await written.promise;
      return () => {
        commit.open();
        return done;
      };
    };
    await delta(); // quiet
    const k1 = await key(3);
    const commit1 = await open(k1, 4321);
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued"); // cannot see it
    await commit1();
    expect((await delta()).status).toBe("enqueued");
    expect(await lastDeltaKeys()).toContain(`${k1.sku}|${k1.location}`);

    const k2 = await key(7);
    const commit2 = await open(k2, 1234);
    await delta(); // cannot see it
    await commit2();
    expect((await delta()).status).toBe("enqueued");
    expect(await lastDeltaKeys()).toContain(`${k2.sku}|${k2.location}`);
    await omsEqualsSource();
  });

  it.skipIf(!inject("pgTemplate")).each([
    {
      kind: "delta",
      at: "insert into stock_sync.stock_runs",
      step: "after its source read, before its state transaction",
    },
    {
      kind: "delta",
      at: "insert into stock_sync.stock_sent",
      step: "in its state transaction, its parts enqueued",
    },
    {
      kind: "full",
      at: "insert into stock_sync.stock_sent|stock_full_rows",
      step: "in its state transaction",
    },
    {
      // on PostgreSQL its rows were COPYed into the state transaction while read (sent-load.ts)
      kind: "full",
      at: "create temp table stock_sent_diff",
      step: "in its state transaction, its rows loaded and its parts enqueued",
    },
  ])("a $kind killed (-9) $step: the delta after recovery has the change", async ({ kind, at }) => {
    if (t().backend !== "postgres") return; // another process needs a server URL
    await delta(); // quiet
    const k = await key(11 + Math.floor(pick() * 50));
    await db().query(
      "update inventory.stock_on_hand set quantity = quantity + 37 where sku = $1 and location = $2",
      [k.sku, k.location],
    );
    const dir = await mkdtemp(join(tmpdir(), "stock-sync-crash-run-"));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const child = spawn(
      process.execPath,
      ["--import", "tsx", fromRoot("test/helpers/exporter-child.ts"), t().url!, kind, at, STOCK_SUB, dir],
      { stdio: ["ignore", "pipe", "inherit"], cwd: fromRoot(".") },
    );
    const exited = new Promise((r) => child.once("exit", r));
    cleanup.push(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    });
    let out = "";
    child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
    await waitUntil(async () => /held|finished/.test(out), 30_000, "the run held at its step");
    expect(out).toContain("held");
    child.kill("SIGKILL");
    await exited;
    // the dead run's stock lock expires (2 s); then the delta runs
    const r = await waitUntil(
      async () => {
        const r = await delta();
        return r.status !== "skipped" && r;
      },
      15_000,
      "the stock lock free again",
    );
    expect(r.status).toBe("enqueued");
    expect(await lastDeltaKeys()).toContain(`${k.sku}|${k.location}`);
    await omsEqualsSource();
  });
});
