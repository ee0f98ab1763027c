/**
 * A staged part's publication is one attempt, bounded by the subscription's `timeout` like a
 * send (issue 13, 1310814): the worker checked that its lease outlasts one timeout from the
 * attempt's start, so nothing of that attempt, and above all no rename, may go out later. Here the
 * network to the server stalls while part N+1 is staged, for longer than the timeout: the publish
 * must end as a failed `timeout` attempt within the timeout, and once the network is back every
 * part arrives once, in order, complete. The same holds when a pause abandons the stalled staging:
 * the wait for it to end (its upload, then its removal) must not fall inside the next attempt.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { setSubscriptionStatus } from "../../src/outbox/admin.js";
import { sftpTrace } from "../../src/sftp/trace.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { type StallProxy, startStallProxy } from "../helpers/freeze-proxy.js";
import { dropContents, expectedFiles, watchDrop } from "../helpers/sftp-drop.js";
import { spyDb } from "../helpers/spy-db.js";
import { enqueueParts, fifoSftpYaml } from "../helpers/sftp-parts.js";
import { type Sshd, startSshd } from "../helpers/sshd.js";

const TIMEOUT_MS = 3000;
/**
 * A rename's start may follow its attempt's start (`attempted_at`, taken just before the request
 * is prepared) by the timeout plus this: the request's own start and timers on a loaded machine.
 * The defect renamed ~1.5 timeouts after it (the stall's end).
 */
const MARGIN_MS = 500;

let sshd: Sshd;
let proxy: StallProxy;
beforeAll(async () => {
  sshd = await startSshd();
  proxy = await startStallProxy(sshd.port);
});
afterAll(async () => {
  sftpTrace.start = undefined;
  await proxy?.close();
  await sshd?.close();
});

// through the proxy: the server's host key is checked as ever
const yaml = (name: string, dir: string) =>
  fifoSftpYaml(sshd, name, dir, { via: proxy.port, timeout: `${TIMEOUT_MS}ms`, retries: 30 });

type AttemptRow = { at: number; durationMs: number; errorClass: string };

/** Each delivery's attempts (in delivery order). */
async function attempts(db: Db, name: string): Promise<AttemptRow[][]> {
  const { rows } = await db.query<{ id: string; at: Date; duration_ms: number; error_class: string | null }>(
    `select d.id, a.attempted_at as at, a.duration_ms, a.error_class
     from stock_sync.deliveries d join stock_sync.attempts a on a.delivery_id = d.id
     where d.subscription = $1 order by d.id, a.id`,
    [name],
  );
  const byDelivery = new Map<string, AttemptRow[]>();
  for (const r of rows) {
    const list = byDelivery.get(r.id) ?? [];
    list.push({ at: new Date(r.at).getTime(), durationMs: r.duration_ms, errorClass: r.error_class ?? "ok" });
    byDelivery.set(r.id, list);
  }
  return [...byDelivery.values()];
}

/**
 * The rename times are this process's clock, `attempted_at` the engine's, which is the database's
 * as estimated from its lease heartbeat (engine.ts offsetMs): the two differ by up to half that
 * round trip. A staged part's rename follows its attempt's start by 2 ms or less, so an attempt
 * owns a rename it started up to this much "after": without it a loaded run (2 of 11) failed with
 * a rename of part 3 "before any attempt".
 */
const CLOCK_SKEW_MS = 500;

/**
 * Renames that went out later than the window of the attempt they belong to (the latest attempt
 * of their part that started before them, within the clocks' skew): attempted_at + timeout + margin.
 */
function lateRenames(
  renames: { file: string; at: number }[],
  partOf: (file: string) => number,
  all: AttemptRow[][],
) {
  return renames.flatMap(({ file, at }) => {
    const own = all[partOf(file)]?.filter((a) => a.at <= at + CLOCK_SKEW_MS).at(-1);
    if (own && at <= own.at + TIMEOUT_MS + MARGIN_MS) return [];
    return [`${file}: ${own ? `${at - own.at} ms after its attempt's start` : "before any attempt"}`];
  });
}

/** Waits until each of the three parts has a delivered attempt. */
async function threeDelivered(db: Db, name: string): Promise<void> {
  await waitUntil(
    async () => {
      const all = await attempts(db, name);
      return all.length === 3 && all.every((a) => a.some((x) => x.errorClass === "ok"));
    },
    60_000,
    "three parts delivered",
  );
}

/** Each part in the folder once, byte for byte, and nothing left under a temporary name. */
async function expectArrived(dir: string, files: { name: string; body: Buffer }[], order: string[]) {
  const got = await dropContents(dir);
  expect([...got.keys()].sort()).toEqual(order);
  for (const f of files) expect(got.get(f.name)!.equals(f.body)).toBe(true);
  expect((await readdir(dir)).filter((n) => n.startsWith("."))).toEqual([]);
}

/** The id of the subscription's first delivery (part 1). */
async function firstDeliveryId(db: Db, name: string): Promise<number> {
  const { rows } = await db.query<{ id: string }>(
    "select min(id) as id from stock_sync.deliveries where subscription = $1",
    [name],
  );
  return Number(rows[0]!.id);
}

/**
 * Logs the renames into `dir` and, as part 2 (`order()[1]`) starts staging, stalls the network
 * before its first byte for 2.5 timeouts (the staging's own timeout, then the removal's, then
 * half of the attempt that waited for both). `end()` clears the hook and lets the network go.
 */
function stallPart2Staging(dir: string, order: () => string[]) {
  const state = { stalled: false, renames: [] as { file: string; at: number }[] };
  let resumeAt: NodeJS.Timeout | undefined;
  sftpTrace.start = (phase, detail) => {
    if (phase === "rename" && detail?.startsWith(`${dir}/`))
      state.renames.push({ file: detail, at: Date.now() });
    if (phase === "stage" && detail === order()[1] && !state.stalled) {
      state.stalled = true;
      proxy.stall();
      resumeAt = setTimeout(() => proxy.resume(), TIMEOUT_MS * 2.5);
    }
  };
  return {
    state,
    end: () => {
      sftpTrace.start = undefined;
      clearTimeout(resumeAt);
      proxy.resume();
    },
  };
}

describeEachDb("sftp:// fifo staging, network stalled", (t) => {
  it("a stall while N+1 is staged: its publish fails as a timeout within the timeout, no rename outside an attempt's window, then all arrive once, in order", async () => {
    const { db } = t();
    const name = `stage-stall-${t().backend}`;
    const dir = await sshd.folder(name);
    let order: string[] = [];
    let stalled = false;
    let resumeAt: NodeJS.Timeout | undefined;
    const renames: { file: string; at: number }[] = [];
    sftpTrace.start = (phase, detail) => {
      // this test's folder only (the file names are the same in the other back end's folder)
      if (phase === "rename" && detail?.startsWith(`${dir}/`)) renames.push({ file: detail, at: Date.now() });
      // part 2's staging starts: the network stalls before its first byte
      if (phase === "stage" && detail === order[1] && !stalled) {
        stalled = true;
        proxy.stall();
      }
      // part 2's publish starts waiting for its staging: the stall outlasts that attempt's timeout
      // by half of it (the stall's length is the fault; nothing in the test waits on it)
      if (phase === "wait" && stalled && !resumeAt)
        resumeAt = setTimeout(() => proxy.resume(), TIMEOUT_MS * 1.5);
    };
    const engine = await startEngine(db, testConfig(yaml(name, dir)), { start: false });
    try {
      await enqueueParts(engine, 3);
      const files = await expectedFiles(db, name);
      order = files.map((f) => f.name);
      const watch = watchDrop(dir, (n) => files.find((f) => f.name === n)?.body.length);
      await engine.engine.start();
      await threeDelivered(db, name);
      await watch.stop();
      expect(resumeAt).toBeDefined(); // the stall came with part 2's staging and lasted past its publish
      const all = await attempts(db, name);
      // part 2's publish ended as a failed attempt, a timeout, within the timeout
      const first = all[1]![0]!;
      expect(first.errorClass).toBe("timeout");
      expect(first.durationMs).toBeLessThanOrEqual(TIMEOUT_MS + MARGIN_MS);
      // every rename went out within the window of the attempt it belongs to (the latest one of
      // its part that started before it)
      const partOf = (file: string) => order.findIndex((n) => file === join(dir, n));
      expect(lateRenames(renames, partOf, all)).toEqual([]);
      // then all arrived: once each, in order, complete, nothing left under a temporary name
      expect(renames.map((r) => partOf(r.file))).toEqual([0, 1, 2]);
      expect(all.map((a) => a.filter((x) => x.errorClass === "ok").length)).toEqual([1, 1, 1]);
      expect(watch.partial).toEqual([]);
      expect(watch.outOfOrder(order)).toEqual([]);
      await expectArrived(dir, files, order);
    } finally {
      sftpTrace.start = undefined;
      clearTimeout(resumeAt);
      proxy.resume();
      await engine.stop();
    }
  }, 90_000);
  it("a pause and a resume while N+1's staging is stalled: part N+1's attempt starts only once the abandoned staging has ended, no rename outside its window, then all arrive once, in order", async () => {
    const name = `stage-stall-pause-${t().backend}`;
    const dir = await sshd.folder(name);
    let order: string[] = [];
    let firstId = 0;
    let paused = false;
    let resumed = false;
    // part 1's record lets the pause in first; once the worker read it paused, the subscription is
    // enabled again (the staging of part 2 is abandoned meanwhile, its upload and removal stalled)
    const db = spyDb(t().db, {
      before: async (text, values) => {
        if (paused || !text.includes("status = 'delivered'") || !values) return;
        if (Number((values[0] as (string | number)[])[0]) !== firstId) return;
        paused = true;
        await setSubscriptionStatus(t().db, name, "paused", new Date(), "test");
      },
      after: (text, rows) => {
        if (resumed || !paused || !text.includes("from stock_sync.subscriptions where name = any")) return;
        if (
          !(rows as { name: string; status: string }[]).some((r) => r.name === name && r.status === "paused")
        )
          return;
        resumed = true;
        void setSubscriptionStatus(t().db, name, "enabled", new Date(), "test");
      },
    });
    const stall = stallPart2Staging(dir, () => order);
    const engine = await startEngine(db, testConfig(yaml(name, dir)), { start: false });
    try {
      await enqueueParts(engine, 3);
      const files = await expectedFiles(db, name);
      order = files.map((f) => f.name);
      firstId = await firstDeliveryId(db, name);
      await engine.engine.start();
      await threeDelivered(t().db, name);
      expect([stall.state.stalled, paused, resumed]).toEqual([true, true, true]);
      const all = await attempts(t().db, name);
      const partOf = (file: string) => order.findIndex((n) => file === join(dir, n));
      expect(lateRenames(stall.state.renames, partOf, all)).toEqual([]);
      expect(stall.state.renames.map((r) => partOf(r.file))).toEqual([0, 1, 2]);
      expect(all.map((a) => a.filter((x) => x.errorClass === "ok").length)).toEqual([1, 1, 1]);
      await expectArrived(dir, files, order);
    } finally {
      stall.end();
      await engine.stop();
    }
  }, 90_000);
  it("part N's success record is lost while N+1's staging is stalled: N is sent again only once that staging has ended, no rename outside its window, then all arrive once, in order", async () => {
    const name = `stage-stall-lost-${t().backend}`;
    const dir = await sshd.folder(name);
    let order: string[] = [];
    let firstId = 0;
    let lostAt = 0;
    // part 1's first success record fails (the state database dropped it): part 1 is owed again,
    // and the head is no longer the part staged behind it
    const db = spyDb(t().db, {
      before: async (text, values) => {
        if (lostAt || !text.includes("status = 'delivered'") || !values) return;
        if (Number((values[0] as (string | number)[])[0]) !== firstId) return;
        lostAt = Date.now();
        throw new Error("test: the record of part 1 is lost");
      },
    });
    const stall = stallPart2Staging(dir, () => order);
    const engine = await startEngine(db, testConfig(yaml(name, dir)), { start: false });
    try {
      await enqueueParts(engine, 3);
      const files = await expectedFiles(db, name);
      order = files.map((f) => f.name);
      firstId = await firstDeliveryId(db, name);
      await engine.engine.start();
      await threeDelivered(t().db, name);
      expect([stall.state.stalled, lostAt > 0]).toEqual([true, true]);
      const all = await attempts(t().db, name);
      const partOf = (file: string) => order.findIndex((n) => file === join(dir, n));
      // the first rename of part 1 belongs to the attempt whose record was lost
      expect(
        lateRenames(
          stall.state.renames.filter((r) => r.at > lostAt),
          partOf,
          all,
        ),
      ).toEqual([]);
      expect(stall.state.renames.map((r) => partOf(r.file))).toEqual([0, 0, 1, 2]);
      expect(all.map((a) => a.filter((x) => x.errorClass === "ok").length)).toEqual([1, 1, 1]);
      await expectArrived(dir, files, order);
    } finally {
      stall.end();
      await engine.stop();
    }
  }, 90_000);
});
