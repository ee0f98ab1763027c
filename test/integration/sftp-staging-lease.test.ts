/**
 * fifo staging (issue 13) while the subscription's lease moves to another process. A staging and
 * the removal of an abandoned one write under the part's temporary name, the same name the next
 * owner uploads that part under: so a staging may start only with at least one `timeout` of lease
 * left (its upload then ends before the lease can move), and an abandoned one is removed only while
 * the lease certainly holds. Here engine A's lease renewals hang (its database stops answering
 * them), engine B takes the subscription when A's lease expires and uploads part N+1, and B's
 * rename of it is held in a stalled network while A goes on: an importer must still see every part
 * once, in order, whole, and A must neither write nor remove that temporary name.
 */
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import type { Sender } from "../../src/outbox/send.js";
import { sftpTrace } from "../../src/sftp/trace.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, type TestEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { type StallProxy, startStallProxy } from "../helpers/freeze-proxy.js";
import { dropContents, expectedFiles, watchDrop } from "../helpers/sftp-drop.js";
import { gate, spyDb } from "../helpers/spy-db.js";
import { enqueueParts, fifoSftpYaml } from "../helpers/sftp-parts.js";
import { type Sshd, startSshd } from "../helpers/sshd.js";

const TIMEOUT_MS = 2000;
/** Over 1.5 timeouts: right before each renewal (every third of it) an attempt may still start. */
const LEASE_MS = 5000;

let sshd: Sshd;
/** A's and B's ways to the server: B's stalls at its rename of part 2, A's at a late write. */
let toA: StallProxy;
let toB: StallProxy;
beforeAll(async () => {
  sshd = await startSshd();
  toA = await startStallProxy(sshd.port);
  toB = await startStallProxy(sshd.port);
});
afterAll(async () => {
  sftpTrace.start = undefined;
  sftpTrace.on = undefined;
  await toA?.close();
  await toB?.close();
  await sshd?.close();
});

const yaml = (name: string, dir: string, via: StallProxy) =>
  fifoSftpYaml(sshd, name, dir, {
    via: via.port,
    timeout: `${TIMEOUT_MS}ms`,
    retries: 30,
    delivery: [`lease: ${LEASE_MS}ms`],
  });

/** Each delivery's attempt outcomes (in delivery order). */
async function attempts(db: Db, name: string): Promise<string[][]> {
  const { rows } = await db.query<{ outcomes: string[] }>(
    `select array_agg(coalesce(a.error_class, 'ok') order by a.id) as outcomes
     from stock_sync.deliveries d join stock_sync.attempts a on a.delivery_id = d.id
     where d.subscription = $1 group by d.id order by d.id`,
    [name],
  );
  return rows.map((r) => r.outcomes);
}

const allDelivered = (db: Db, name: string, parts: number) => async () => {
  const all = await attempts(db, name);
  return all.length === parts && all.every((o) => o.includes("ok"));
};

/** What A's sender was asked to do with temporary names: stage, abandon (and remove), and when. */
type TempWork = { op: "stage" | "abandon"; file: string; remove?: boolean; leaseMoved: boolean };

/**
 * A's sender, recording each staging and each abandonment (and whether B held the lease then);
 * `ended` is called when an abandonment has ended (its removal, if any, done).
 */
function recordTempWork(
  sender: Sender,
  leaseMoved: () => boolean,
  log: TempWork[],
  ended: () => void,
): Sender {
  return {
    ...sender,
    async stage(req) {
      log.push({ op: "stage", file: req.fileName, leaseMoved: leaseMoved() });
      const staged = await sender.stage!(req);
      if (!staged) return null;
      return {
        publish: (r) => staged.publish(r),
        abandon: async (remove) => {
          log.push({ op: "abandon", file: req.fileName, remove, leaseMoved: leaseMoved() });
          await staged.abandon(remove).finally(ended);
        },
      };
    },
  };
}

describeEachDb("sftp:// fifo staging, lease moved to another engine", (t) => {
  it("A's read of part 2 is slow and its renewals hang: once its lease has less than one timeout left A stages nothing, and B's part 2 arrives whole, once, in order", async () => {
    const name = `stage-lease-start-${t().backend}`;
    const dir = await sshd.folder(name);
    let order: string[] = [];
    let renewalsHang = false;
    const renewals = gate();
    let readAheadHeld = false;
    const readAhead = gate(); // A's read of part 2's payload (ahead, while part 1 is sent)
    let released = false;
    let resumed = false;
    const bAtRename = gate();
    const work: TempWork[] = [];
    let b: TestEngine | undefined;
    const leaseMoved = () => b?.engine.owned().includes(name) === true;
    const resumeB = () => {
      resumed = true;
      toB.resume();
    };
    const dbA = spyDb(t().db, {
      before: async (text) => {
        // the renewal's first statement: the whole renewal waits, A's lease is not extended
        if (renewalsHang && text.includes("select distinct lease_owner")) await renewals.promise;
        return undefined;
      },
      after: async (text) => {
        // A's renewal is answered after its staging decision (a few steps after the read of part
        // 2, against three statements): made without staging, B's rename may go on
        if (released && !resumed && text.includes("with renewed as") && work.length === 0) resumeB();
        if (readAheadHeld || !text.includes("and id > $2")) return;
        readAheadHeld = true;
        await readAhead.promise;
      },
    });
    sftpTrace.start = (phase, detail) => {
      // only B renames part 2 (A's checks refuse it): the rename waits in B's stalled network
      if (phase === "rename" && detail === join(dir, order[1] ?? "?") && !released) {
        toB.stall();
        bAtRename.open();
      }
      // a write while B waits is A's staging, its temporary file opened (truncated) already:
      // A's bytes wait, and B's rename goes on
      if (phase === "write" && released && !resumed) {
        toA.stall();
        resumeB();
      }
    };
    // a staging of A that ended without writing (A's stop aborts it once its renewal finds the
    // lease gone): B's rename goes on too
    sftpTrace.on = (phase, _s, _e, detail) => {
      if (phase === "stage" && detail === order[1] && released && !resumed) resumeB();
    };
    const a = await startEngine(dbA, testConfig(yaml(name, dir, toA)), {
      start: false,
      wrapSender: (s) => recordTempWork(s, leaseMoved, work, () => undefined),
    });
    let watch: ReturnType<typeof watchDrop> | undefined;
    try {
      await enqueueParts(a, 3);
      const files = await expectedFiles(t().db, name);
      order = files.map((f) => f.name);
      watch = watchDrop(dir, (n) => files.find((f) => f.name === n)?.body.length);
      await a.engine.start();
      renewalsHang = true; // from A's second renewal on
      b = await startEngine(t().db, testConfig(yaml(name, dir, toB)));
      // A sends part 1 while its read of part 2 is held; its lease runs out, B takes over and
      // uploads part 2 itself, up to its rename
      await bAtRename.promise;
      expect(leaseMoved()).toBe(true);
      // A's database answers again: the read of part 2, then its renewal. (Held on, the renewal
      // would leave A's worker checking part 2 again and again, each refused: on PGlite a loop
      // with no I/O that starves the process, B included; see the report of this test.)
      released = true;
      readAhead.open();
      renewals.open();
      await waitUntil(allDelivered(t().db, name, 3), 30_000, "three parts delivered");
      await watch.stop();
      expect([readAheadHeld, resumed]).toEqual([true, true]);
      // every part once, in order, whole; nothing left under a temporary name
      expect.soft(await attempts(t().db, name)).toEqual([["ok"], ["ok"], ["ok"]]);
      expect.soft(watch.partial).toEqual([]);
      expect.soft(watch.outOfOrder(order)).toEqual([]);
      const got = await dropContents(dir);
      expect.soft([...got.keys()].sort()).toEqual(order);
      for (const f of files) expect.soft(got.get(f.name)?.length, f.name).toBe(f.body.length);
      for (const f of files) expect.soft(got.get(f.name)?.equals(f.body), f.name).toBe(true);
      expect.soft((await readdir(dir)).filter((n) => n.startsWith("."))).toEqual([]);
      // A staged nothing once its lease had moved (let alone less than one timeout left)
      expect(work.filter((w) => w.leaseMoved)).toEqual([]);
    } finally {
      sftpTrace.start = undefined;
      sftpTrace.on = undefined;
      await watch?.stop();
      readAhead.open();
      renewals.open();
      toA.resume();
      toB.resume();
      await a.stop();
      await b?.stop();
    }
  }, 60_000);

  it("A's database stalls with part 2 staged and comes back once B uploads part 2: A abandons its staging without removing B's temporary file, and part 2 arrives whole, once, in order", async () => {
    const name = `stage-lease-remove-${t().backend}`;
    const dir = await sshd.folder(name);
    let order: string[] = [];
    let frozen = false;
    const thaw = gate();
    let stagedByA = false;
    const bAtRename = gate();
    const work: TempWork[] = [];
    let abandonsEnded = 0;
    let b: TestEngine | undefined;
    const leaseMoved = () => b?.engine.owned().includes(name) === true;
    let part1Renamed = false;
    // once part 1's success record is answered, nothing A asks the database is answered (its
    // renewals included) until the thaw; nor is the read of part 2's head made beside that record
    // (worker.ts #readBeside), which would otherwise let A publish part 2 before its lease moved
    const dbA = spyDb(t().db, {
      before: async () => {
        if (frozen) await thaw.promise;
        return undefined;
      },
      after: async (text) => {
        if (text.includes("status = 'delivered'")) frozen = true;
        else if (part1Renamed && text.includes("as sendable")) await thaw.promise;
      },
    });
    sftpTrace.on = (phase, _s, _e, detail) => {
      if (phase === "stage" && detail === order[1] && !leaseMoved()) stagedByA = true;
    };
    sftpTrace.start = (phase, detail) => {
      if (phase === "rename" && detail === join(dir, order[0] ?? "?")) part1Renamed = true;
      // only B renames part 2 (A's checks refuse it): the rename waits in B's stalled network
      if (phase === "rename" && detail === join(dir, order[1] ?? "?") && frozen) {
        toB.stall();
        bAtRename.open();
      }
    };
    const a = await startEngine(dbA, testConfig(yaml(name, dir, toA)), {
      start: false,
      wrapSender: (s) => recordTempWork(s, leaseMoved, work, () => abandonsEnded++),
    });
    let watch: ReturnType<typeof watchDrop> | undefined;
    try {
      await enqueueParts(a, 3);
      const files = await expectedFiles(t().db, name);
      order = files.map((f) => f.name);
      watch = watchDrop(dir, (n) => files.find((f) => f.name === n)?.body.length);
      await a.engine.start();
      b = await startEngine(t().db, testConfig(yaml(name, dir, toB)));
      // A sent part 1 and staged part 2 with its lease good; then its database stalled, its
      // lease ran out, and B took over and uploaded part 2 up to its rename
      await bAtRename.promise;
      expect([stagedByA, leaseMoved()]).toEqual([true, true]);
      frozen = false;
      thaw.open();
      // A's renewal finds the lease gone: its worker stops and abandons the staging
      await waitUntil(async () => abandonsEnded > 0, 30_000, "A's staging abandoned");
      toB.resume();
      await waitUntil(allDelivered(t().db, name, 3), 30_000, "three parts delivered");
      await watch.stop();
      // every part once (B's rename of part 2 found its file), in order, whole, nothing left
      expect.soft(await attempts(t().db, name)).toEqual([["ok"], ["ok"], ["ok"]]);
      expect.soft(watch.partial).toEqual([]);
      expect.soft(watch.outOfOrder(order)).toEqual([]);
      const got = await dropContents(dir);
      expect.soft([...got.keys()].sort()).toEqual(order);
      for (const f of files) expect.soft(got.get(f.name)?.equals(f.body), f.name).toBe(true);
      expect.soft((await readdir(dir)).filter((n) => n.startsWith("."))).toEqual([]);
      // A removed no temporary file once its lease had moved
      expect(work.filter((w) => w.op === "abandon" && w.remove && w.leaseMoved)).toEqual([]);
    } finally {
      sftpTrace.start = undefined;
      sftpTrace.on = undefined;
      await watch?.stop();
      frozen = false;
      thaw.open();
      toB.resume();
      await a.stop();
      await b?.stop();
    }
  }, 60_000);
});
