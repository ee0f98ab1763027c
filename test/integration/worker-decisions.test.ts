/**
 * The delivery worker's own decisions (src/outbox/worker.ts), one worker driven directly against
 * a real database and a real HTTP receiver, with a clock the test moves: when it reads its
 * backlog again (a wake during a read, a failed read, a due time, a receiver's pause), what it
 * sends and what it holds back, what a stop records. Fast on purpose: it is the file the
 * worker's mutation runs use (docs/testing.md).
 */
import { expect, it } from "vitest";
import { fixedClock } from "../../src/clock.js";
import { createSharedBatches } from "../../src/outbox/batches.js";
import { enqueue } from "../../src/outbox/enqueue.js";
import { newOwnerId } from "../../src/outbox/owners.js";
import { acquireLeases, syncSubscriptions } from "../../src/outbox/queries.js";
import { createSender } from "../../src/outbox/send.js";
import { SubscriptionWorker, TARGET_PER_SLOT } from "../../src/outbox/worker.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import type { Logger } from "../../src/log.js";
import { capturedLog } from "../helpers/captured-log.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { quietLog, subscriptionYaml, testConfig, waitUntil } from "../helpers/engine.js";
import { gate, spyDb } from "../helpers/spy-db.js";

const { cleanup, receiver } = useCleanup();

/** The worker's read of its backlog (queries.ts dueForSubscriptions). */
const isDueRead = (text: string) => text.includes("stock_sync.due_deliveries(");
/** The last check before a request (queries.ts mayAttempt). */
const isLastCheck = (text: string) => text.includes("where d.id = any($1::int8[])");
/** The status read alone (queries.ts subscriptionStatuses). */
const isStatusRead = (text: string) => text.startsWith("select name, status from stock_sync.subscriptions");
/** A record of successes (outcome.ts recordSuccessGroups). */
const isSuccessRecord = (text: string) => text.includes("set status = 'delivered'");
/** fifo's head read whole, with its payload (queries.ts backlogHead). */
const isWholeHeadRead = (text: string) => isHeadRead(text) && text.includes("m.payload");
/** fifo's read of its head (queries.ts backlogHead / backlogHeadMeta, not the read ahead). */
const isHeadRead = (text: string) =>
  text.includes("order by subscription, id limit 1") && !text.includes("id > $2");

/** A receiver that answers its first `held` requests (204) only once `released` opens. */
async function heldReceiver(held: number) {
  const released = gate();
  const r = await receiver((_req, i) =>
    i < held ? { status: 204, until: released.promise } : { status: 204 },
  );
  return { released, r };
}

/** Hooks that refuse the last check before a request while `failing()` says so. */
const refuseLastCheck = (failing: () => boolean) => ({
  before: (text: string) =>
    failing() && isLastCheck(text) ? Promise.reject(new Error("last check refused")) : undefined,
});

const WAIT_MS = 5000;
/** Messages that fill the queue of a worker at concurrency 1 (one on the wire, the rest queued). */
const full = Array.from({ length: TARGET_PER_SLOT }, (_, i) => i + 1);
const body = (req: { body: Buffer }) => JSON.parse(req.body.toString()).n as number;

type Rows = {
  id: number;
  n: number;
  status: string;
  attempts: number;
  next_attempt_at: Date;
  last_error: string | null;
}[];

describeEachDb("delivery worker decisions", (t) => {
  let count = 0;

  /**
   * One subscription and its worker, holding the subscription's lease in the database; the
   * worker's clock is fixed a minute ahead of the database's (every enqueued message is due) and
   * moves only when the test sets it.
   */
  async function setup(opts: {
    url: string;
    more?: string;
    hooks?: Parameters<typeof spyDb>[1];
    log?: Logger;
    leaseLeft?: () => number;
    /** No observer (onAttempt), as an engine without metrics runs it. */
    unobserved?: boolean;
    /** More subscriptions in the config (lines of its `subscriptions:` list). */
    others?: string;
  }) {
    const name = `worker_${++count}`;
    const config = testConfig(
      `subscriptions:\n${subscriptionYaml(name, opts.url, opts.more ?? "")}${opts.others ?? ""}`,
    );
    const subs = buildSubscriptions(config);
    const sub = subs[0]!;
    await syncSubscriptions(
      t().db,
      subs.map((s) => ({ name: s.name, status: s.status })),
    );
    const owner = newOwnerId();
    await acquireLeases(t().db, {
      owner,
      renew: [],
      candidates: [name],
      take: 1,
      leaseMs: 600_000,
      deadOwners: [],
    });
    const clock = fixedClock(new Date(Date.now() + 60_000));
    const t0 = clock.now().getTime();
    const db = opts.hooks ? spyDb(t().db, opts.hooks) : t().db;
    const recording = {
      db,
      clock,
      log: opts.log ?? quietLog,
      random: () => 0.5,
      owner,
      all: subs,
      notifyMinIntervalMs: 0,
    };
    const sender = createSender({ smtp: config.notifications.smtp });
    /** What the worker's observer (metrics) was told: delivery id and outcome of each record. */
    const attempts: [number, string][] = [];
    /** The other subscriptions the worker woke (a notification enqueued for them). */
    const woken: string[] = [];
    const worker = new SubscriptionWorker(sub, {
      ...recording,
      sender,
      wake: (names) => woken.push(...names),
      batches: createSharedBatches(recording),
      leaseLeft: opts.leaseLeft ?? (() => 600_000),
      clockErrorMs: () => 0,
      onAttempt: opts.unobserved
        ? undefined
        : (_sub, row, outcome) => attempts.push([Number(row.id), outcome]),
    });
    cleanup.push(() => sender.close());
    cleanup.push(() => worker.stop(0));
    return {
      name,
      sub,
      worker,
      attempts,
      woken,
      t0,
      /** Moves the worker's clock to `ms` after where it started. */
      at: (ms: number) => clock.set(new Date(t0 + ms)),
      async send(...ns: number[]) {
        for (const n of ns)
          await t().db.tx((tx) =>
            enqueue(tx, subs, {
              subject: "order.created",
              payload: `{"n":${n}}`,
              contentType: "application/json",
            }),
          );
      },
      async rows(): Promise<Rows> {
        const { rows } = await t().db.query<Rows[number]>(
          `select d.id::int as id, (convert_from(m.payload, 'UTF8')::jsonb->>'n')::int as n, d.status, d.attempts,
                  d.next_attempt_at, d.last_error
           from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
           where d.subscription = $1 order by d.id`,
          [name],
        );
        return rows;
      },
      /** The pump is done and nothing is taken: what the worker decided is decided. */
      idle: (what = "the worker to settle") =>
        waitUntil(async () => worker.stalledMs() === 0 && worker.inFlight === 0, WAIT_MS, what),
    };
  }

  it("a wake during a read of the backlog reads it again: a message enqueued meanwhile is sent", async () => {
    const r = await receiver();
    const answered = gate();
    const held = gate();
    let reads = 0;
    const w = await setup({
      url: r.url,
      hooks: {
        after: async (text) => {
          if (!isDueRead(text) || ++reads > 1) return;
          answered.open();
          await held.promise; // the (empty) answer reaches the worker only when the test says
        },
      },
    });
    expect(w.worker.stalledMs()).toBe(0); // not waiting on anything
    w.worker.wake();
    await answered.promise;
    expect(w.worker.stalledMs()).toBeGreaterThan(0); // waiting on its read
    await w.send(1);
    w.worker.wake(); // coalesced into the running pump: it must read once more
    held.open();
    const [req] = await r.waitFor(1, WAIT_MS);
    expect(body(req!)).toBe(1);
    await waitUntil(async () => (await w.rows())[0]?.status === "delivered", WAIT_MS, "the record");
    await w.idle("the pump to end"); // and once it has, it is waiting on nothing
    expect(w.worker.stalledMs()).toBe(0);
    // and it still wakes up (the pump is not left marked as running)
    await w.send(2);
    w.worker.wake();
    await r.waitFor(2, WAIT_MS);
    expect(r.requests.map(body)).toEqual([1, 2]);
    const ids = (await w.rows()).map((d) => d.id);
    await waitUntil(async () => w.attempts.length === 2, WAIT_MS, "the observer");
    expect(w.attempts).toEqual(ids.map((id) => [id, "delivered"]));
  });

  it("a stopped worker reads its backlog no more: neither a wake nor a read that was running goes on", async () => {
    const r = await receiver();
    const answered = gate();
    const held = gate();
    let reads = 0;
    const w = await setup({
      url: r.url,
      hooks: {
        after: async (text) => {
          if (!isDueRead(text) || ++reads > 1) return;
          answered.open();
          await held.promise;
        },
      },
    });
    w.worker.wake();
    await answered.promise;
    await w.send(1);
    w.worker.wake(); // would read again after this read…
    const stopped = w.worker.stop(0); // …but the worker stops meanwhile
    held.open();
    await stopped;
    await waitUntil(async () => w.worker.stalledMs() === 0, WAIT_MS, "the running read to end");
    expect(reads).toBe(1);
    // a wake after the stop starts nothing
    w.worker.wake();
    expect(w.worker.stalledMs()).toBe(0);
    await t().db.query("select 1"); // a round trip: a read it had started would be counted by now
    expect(reads).toBe(1);
    expect(r.requests).toHaveLength(0);
    expect((await w.rows()).map((d) => [d.status, d.attempts])).toEqual([["pending", 0]]);
  });

  it("a failed read of the backlog is warned about, and the backlog is read again 1 s later (worker's clock), by itself", async () => {
    const r = await receiver();
    const cap = capturedLog();
    let reads = 0;
    const w = await setup({
      url: r.url,
      log: cap.log,
      hooks: {
        before: (text) => {
          if (!isDueRead(text)) return undefined;
          reads++;
          return reads === 1 ? Promise.reject(new Error("backlog read refused")) : undefined;
        },
      },
    });
    await w.send(1);
    w.worker.wake();
    await waitUntil(async () => cap.warnings().length > 0, WAIT_MS, "the warning");
    expect(cap.warnings()).toEqual([
      expect.objectContaining({
        msg: "delivery worker could not read its backlog",
        subscription: w.name,
        err: expect.objectContaining({ message: "backlog read refused" }),
      }),
    ]);
    await waitUntil(async () => w.worker.stalledMs() === 0, WAIT_MS, "the pump to end");
    // 999 ms later (the worker's clock), a wake reads nothing: no hot loop against a failing database
    w.at(999);
    w.worker.wake();
    await waitUntil(async () => w.worker.stalledMs() === 0, WAIT_MS, "the pump to end");
    expect(reads).toBe(1);
    // at 1 s the worker's own timer reads again, with no wake from outside, and sends
    w.at(1000);
    const [req] = await r.waitFor(1, WAIT_MS);
    expect(body(req!)).toBe(1);
    expect(reads).toBe(2);
  });

  it("a receiver's 429 holds back a row already taken, until its Retry-After has passed on the worker's clock", async () => {
    // the first request is asked to wait 1 s; the second row was fetched with the first
    const r = await receiver((_req, i) =>
      i === 0 ? { status: 429, headers: { "retry-after": "1" } } : { status: 204 },
    );
    let reads = 0;
    const w = await setup({
      url: r.url,
      more: "    concurrency: 1\n    retry_intervals: [1]\n",
      hooks: {
        after: (text) => {
          if (isDueRead(text)) reads++;
        },
      },
    });
    await w.send(1, 2);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS);
    await w.idle();
    expect(r.requests.map(body)).toEqual([1]);
    const [first, second] = await w.rows();
    // throttled: no retry used up, due again when the receiver said (on the worker's clock)
    expect(first).toMatchObject({ status: "failed", attempts: 0 });
    expect(first!.next_attempt_at.getTime()).toBe(w.t0 + 1000);
    expect(second).toMatchObject({ status: "pending", attempts: 0 });
    // while the receiver's pause lasts, a wake does not even read the backlog
    const readsHeld = reads;
    w.at(999);
    w.worker.wake();
    await w.idle();
    expect(reads).toBe(readsHeld);
    // The database holds the subscription too (outcome.ts throttle(), its own clock): once it
    // lets go, a wake exactly at the end of the hold (worker's clock) sends both.
    await waitUntil(
      async () =>
        (
          await t().db.query<{ ok: boolean }>(
            "select throttled_until <= now() as ok from stock_sync.subscriptions where name = $1",
            [w.name],
          )
        ).rows[0]?.ok,
      WAIT_MS,
      "the database's hold to end",
    );
    w.at(1000);
    w.worker.wake();
    await r.waitFor(3, WAIT_MS);
    expect(r.requests.map(body).slice(1).sort()).toEqual([1, 2]);
  });

  it("a failure without Retry-After holds nothing back: the row taken with it is sent", async () => {
    const r = await receiver((_req, i) => ({ status: i === 0 ? 500 : 204 }));
    const w = await setup({ url: r.url, more: "    concurrency: 1\n    retry_intervals: [60]\n" });
    await w.send(1, 2);
    w.worker.wake();
    await r.waitFor(2, WAIT_MS);
    expect(r.requests.map(body)).toEqual([1, 2]);
  });

  it("a delivery due later is sent when it comes due (worker's clock), by the worker's own timer; an earlier one moves the timer", async () => {
    const r = await receiver();
    let reads = 0;
    const w = await setup({ url: r.url, hooks: { after: (text) => void (isDueRead(text) && reads++) } });
    await w.send(1);
    await t().db.query("update stock_sync.deliveries set next_attempt_at = $2 where subscription = $1", [
      w.name,
      new Date(w.t0 + 60_000),
    ]);
    w.worker.wake();
    await waitUntil(async () => reads === 1 && w.worker.stalledMs() === 0, WAIT_MS, "the first read");
    // a second one, due in 300 ms: the timer moves from a minute to 300 ms
    await w.send(2);
    await t().db.query(
      "update stock_sync.deliveries set next_attempt_at = $2 where subscription = $1 and next_attempt_at < $2",
      [w.name, new Date(w.t0 + 300)],
    );
    w.worker.wake();
    await waitUntil(async () => reads === 2 && w.worker.stalledMs() === 0, WAIT_MS, "the second read");
    expect(r.requests).toHaveLength(0);
    w.at(300);
    const [req] = await r.waitFor(1, WAIT_MS);
    expect(body(req!)).toBe(2);
    await w.idle();
    expect(r.requests.map(body)).toEqual([2]);
  });

  it("a row that waited in the queue over 100 ms is checked again in the database: a pause committed meanwhile stops it", async () => {
    const { released, r } = await heldReceiver(1);
    let checks = 0;
    const w = await setup({
      url: r.url,
      more: "    concurrency: 1\n",
      hooks: { before: (text) => void (isLastCheck(text) && checks++) },
    });
    await w.send(1, 2);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS); // 1 on the wire, 2 queued behind it (fetched with it)
    // another process pauses the subscription: no wake-up here
    await t().db.query("update stock_sync.subscriptions set status = 'paused' where name = $1", [w.name]);
    w.at(101);
    released.open();
    await w.idle();
    expect(r.requests.map(body)).toEqual([1]);
    expect(checks).toBe(1);
    expect((await w.rows()).map((d) => [d.n, d.status, d.attempts])).toEqual([
      [1, "delivered", 1],
      [2, "pending", 0],
    ]);
  });

  it("a row fetched 100 ms ago (worker's clock) starts without another check", async () => {
    const { released, r } = await heldReceiver(1);
    let checks = 0;
    const w = await setup({
      url: r.url,
      more: "    concurrency: 1\n",
      hooks: { before: (text) => void (isLastCheck(text) && checks++) },
    });
    await w.send(1, 2);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS);
    w.at(100);
    released.open();
    await r.waitFor(2, WAIT_MS);
    expect(checks).toBe(0);
  });

  it("fifo: a head is checked in the database before it goes (its read has none); a pause meanwhile stops it", async () => {
    const r = await receiver();
    const answered = gate();
    const held = gate();
    let heads = 0;
    let checks = 0;
    const w = await setup({
      url: r.url,
      more: "    ordering: fifo\n",
      hooks: {
        before: (text) => void (isLastCheck(text) && checks++),
        after: async (text) => {
          if (!isHeadRead(text) || ++heads > 1) return;
          answered.open();
          await held.promise;
        },
      },
    });
    await w.send(1);
    w.worker.wake();
    await answered.promise; // the status was read (enabled), then the head
    await t().db.query("update stock_sync.subscriptions set status = 'paused' where name = $1", [w.name]);
    held.open();
    await w.idle();
    expect(checks).toBe(1);
    expect(r.requests).toHaveLength(0);
    expect((await w.rows()).map((d) => [d.status, d.attempts])).toEqual([["pending", 0]]);
  });

  it("fifo: one at a time in order, each with its own payload; a failed head is retried when due (worker's clock) before the next", async () => {
    const r = await receiver((_req, i) => ({ status: i === 1 ? 500 : 204 }));
    const w = await setup({ url: r.url, more: "    ordering: fifo\n    retry_intervals: [0.5]\n" });
    await w.send(1, 2, 3);
    w.worker.wake();
    await r.waitFor(2, WAIT_MS);
    await waitUntil(async () => (await w.rows())[1]?.status === "failed", WAIT_MS, "the failure's record");
    await w.idle();
    // the failed head is not due yet: nothing behind it goes
    expect(r.requests.map(body)).toEqual([1, 2]);
    expect((await w.rows())[1]!.next_attempt_at.getTime()).toBe(w.t0 + 500);
    w.at(500); // the worker's timer (set for its due time) finds it due
    await r.waitFor(4, WAIT_MS);
    expect(r.requests.map(body)).toEqual([1, 2, 2, 3]);
  });

  /**
   * fifo's next head is read (status, head, last checks) while the outcome before it is recorded,
   * not after (issue 13: one round trip less between two stock parts). Each test holds the record
   * of message 1 and acts meanwhile.
   */
  async function heldRecord(more = "") {
    const r = await receiver();
    const recordHeld = gate();
    const release = gate();
    const early = gate();
    let recording = false;
    let records = 0;
    /** Head reads answered while message 1's record was held. */
    let headsMeanwhile = 0;
    /** Head reads made, in all. */
    let heads = 0;
    let statusReads = 0;
    const w = await setup({
      url: r.url,
      more: `    ordering: fifo\n${more}`,
      hooks: {
        before: async (text) => {
          if (!isSuccessRecord(text) || ++records > 1) return;
          recording = true;
          recordHeld.open();
          await release.promise;
          recording = false;
        },
        after: (text) => {
          if (isStatusRead(text)) statusReads++;
          if (!isHeadRead(text)) return;
          heads++;
          if (recording) {
            headsMeanwhile++;
            early.open();
          }
        },
      },
    });
    await w.send(1, 2);
    w.worker.wake();
    await recordHeld.promise;
    // the read made beside the record, if there is one (the code before it made none)
    await Promise.race([early.promise, new Promise((res) => setTimeout(res, 300))]);
    return {
      r,
      w,
      release,
      heads: () => heads,
      headsMeanwhile: () => headsMeanwhile,
      statusReads: () => statusReads,
    };
  }

  it("fifo: the next head is read and checked while the outcome before it is recorded, and sent on that read once it is", async () => {
    const h = await heldRecord();
    expect(h.headsMeanwhile()).toBe(1);
    expect(h.r.requests.map(body)).toEqual([1]);
    const before = h.heads();
    h.release.open();
    await h.r.waitFor(2, WAIT_MS);
    await h.w.idle();
    expect(h.r.requests.map(body)).toEqual([1, 2]);
    // message 2 went on the read made beside the record: no other head read before it, no check
    expect(h.heads()).toBe(before + 1); // (the one after 2: an empty backlog)
    expect((await h.w.rows()).map((d) => d.status)).toEqual(["delivered", "delivered"]);
  });

  it("fifo: an outcome fenced while it was recorded (the lease moved): nothing is sent on the read made beside it", async () => {
    const h = await heldRecord();
    await t().db.query(
      "update stock_sync.subscriptions set lease_owner = 'another process', lease_until = now() + interval '1 hour' where name = $1",
      [h.w.name],
    );
    h.release.open();
    await waitUntil(async () => h.heads() > 1, WAIT_MS, "a head read after the record");
    await h.w.idle();
    expect(h.r.requests.map(body)).toEqual([1]);
    expect((await h.w.rows()).map((d) => [d.status, d.attempts])).toEqual([
      ["pending", 0],
      ["pending", 0],
    ]);
  });

  it("fifo: a pause while the outcome is recorded wakes the worker: nothing is sent on the read made before it", async () => {
    const h = await heldRecord();
    await t().db.query("update stock_sync.subscriptions set status = 'paused' where name = $1", [h.w.name]);
    const reads = h.statusReads();
    h.w.worker.wake(); // what a pause does (ops API, LISTEN)
    await waitUntil(async () => h.statusReads() > reads, WAIT_MS, "the status read");
    h.release.open();
    await waitUntil(async () => (await h.w.rows())[0]?.status === "delivered", WAIT_MS, "the record");
    await h.w.idle();
    expect(h.r.requests.map(body)).toEqual([1]);
    expect((await h.w.rows()).map((d) => d.status)).toEqual(["delivered", "pending"]);
  });

  it("concurrency: that many requests on the wire at once", async () => {
    const { released, r } = await heldReceiver(Number.POSITIVE_INFINITY);
    const w = await setup({ url: r.url, more: "    concurrency: 2\n" });
    await w.send(1, 2, 3);
    w.worker.wake();
    await r.waitFor(2, WAIT_MS); // two unanswered requests
    expect(r.requests.filter((q) => q.endedAt === undefined)).toHaveLength(2);
    released.open();
    await r.waitFor(3, WAIT_MS);
  });

  it("nothing starts unless the lease holds for a whole request more (the timeout)", async () => {
    const r = await receiver();
    let lease = 10_000; // exactly the subscription's timeout
    let taken = 0;
    const w = await setup({
      url: r.url,
      more: "    timeout: 10s\n",
      leaseLeft: () => lease,
      hooks: {
        after: (text, rows) => {
          if (isDueRead(text)) taken += rows.length;
        },
      },
    });
    await w.send(1);
    w.worker.wake();
    await waitUntil(async () => taken === 1, WAIT_MS, "the row to be taken");
    await w.idle("the row to be dropped");
    expect(r.requests).toHaveLength(0);
    expect((await w.rows()).map((d) => [d.status, d.attempts])).toEqual([["pending", 0]]);
    lease = 10_001;
    w.worker.wake();
    await r.waitFor(1, WAIT_MS);
  });

  it("a pause wakes the worker: a row already taken and queued is not sent (the queue full: status read alone)", async () => {
    const { released, r } = await heldReceiver(1);
    let statusReads = 0;
    const w = await setup({
      url: r.url,
      more: "    concurrency: 1\n",
      hooks: {
        after: (text) => {
          if (isStatusRead(text)) statusReads++;
        },
      },
    });
    await w.send(...full);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS); // 1 on the wire, the rest queued: the queue is full
    await t().db.query("update stock_sync.subscriptions set status = 'paused' where name = $1", [w.name]);
    w.worker.wake(); // what a pause does (ops API, LISTEN)
    await waitUntil(async () => statusReads === 1 && w.worker.stalledMs() === 0, WAIT_MS, "the status read");
    released.open();
    await w.idle();
    expect(r.requests.map(body)).toEqual([1]);
    expect((await w.rows()).map((d) => [d.n, d.status])).toEqual(
      full.map((n) => [n, n === 1 ? "delivered" : "pending"]),
    );
  });

  it("a pause wakes the worker: a row already taken and queued is not sent (room left: status read with the backlog)", async () => {
    const { released, r } = await heldReceiver(2);
    let reads = 0;
    const w = await setup({
      url: r.url,
      more: "    concurrency: 2\n",
      hooks: {
        after: (text) => {
          if (isDueRead(text)) reads++;
        },
      },
    });
    await w.send(1, 2, 3);
    w.worker.wake();
    await r.waitFor(2, WAIT_MS); // 1 and 2 on the wire, 3 queued, room for one more
    expect(reads).toBe(1);
    await t().db.query("update stock_sync.subscriptions set status = 'paused' where name = $1", [w.name]);
    w.worker.wake();
    await waitUntil(async () => reads === 2 && w.worker.stalledMs() === 0, WAIT_MS, "the read");
    released.open();
    await w.idle();
    expect(r.requests.map(body).sort()).toEqual([1, 2]);
    expect((await w.rows()).map((d) => [d.n, d.status])).toEqual([
      [1, "delivered"],
      [2, "delivered"],
      [3, "pending"],
    ]);
  });

  it("an outcome moved away from us (lease taken meanwhile) is not written, and warned about", async () => {
    const { released, r } = await heldReceiver(Number.POSITIVE_INFINITY);
    const cap = capturedLog();
    const w = await setup({ url: r.url, log: cap.log });
    await w.send(1);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS);
    await t().db.query(
      "update stock_sync.subscriptions set lease_owner = 'another-process', lease_until = now() + interval '1 minute' where name = $1",
      [w.name],
    );
    released.open();
    await waitUntil(async () => cap.warnings().length > 0, WAIT_MS, "the warning");
    const [row] = await w.rows();
    expect(cap.warnings()).toEqual([
      expect.objectContaining({
        msg: "attempt outcome not written: the delivery is no longer owed or the lease moved to another process",
        subscription: w.name,
        deliveries: [row!.id],
      }),
    ]);
    expect(row).toMatchObject({ status: "pending", attempts: 0 });
  });

  it("an outcome that could not be recorded is warned about; the delivery stays owed and is sent again, not before 1 s (worker's clock)", async () => {
    const r = await receiver();
    const cap = capturedLog();
    // every write of an outcome fails as a cancelled statement would (transient: record.ts
    // retries it for ~2 s, then gives up)
    let failing = true;
    const w = await setup({
      url: r.url,
      log: cap.log,
      more: "    concurrency: 1\n",
      hooks: {
        before: (text) =>
          failing && text.includes("insert into stock_sync.attempts")
            ? Promise.reject(Object.assign(new Error("canceling statement"), { code: "57014" }))
            : undefined,
      },
    });
    await w.send(1);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS);
    await waitUntil(async () => cap.warnings().length > 0, WAIT_MS, "the warning");
    failing = false;
    const [row] = await w.rows();
    expect(cap.warnings()).toEqual([
      expect.objectContaining({
        msg: "delivery attempt not recorded",
        subscription: w.name,
        delivery: row!.id,
      }),
    ]);
    expect(row).toMatchObject({ status: "pending", attempts: 0 });
    await w.idle();
    w.at(999);
    w.worker.wake();
    await w.idle();
    expect(r.requests).toHaveLength(1);
    w.at(1000); // the worker's timer: sent again
    await r.waitFor(2, WAIT_MS);
    await waitUntil(async () => (await w.rows())[0]?.status === "delivered", WAIT_MS, "the record");
  });

  it("rate limit: a row that waited for its slot is checked again; one that does not go gives the slot back", async () => {
    const { released, r } = await heldReceiver(1);
    let checks = 0;
    const w = await setup({
      url: r.url,
      more: "    concurrency: 1\n    rate_limit: { requests: 1, per: 2s }\n",
      hooks: {
        before: (text) => {
          if (isLastCheck(text)) checks++;
          return undefined;
        },
      },
    });
    await w.send(1, 2);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS); // 1 holds the window's only slot; 2 is queued behind it
    await t().db.query("update stock_sync.subscriptions set status = 'paused' where name = $1", [w.name]);
    w.at(50); // 2 starts within 100 ms of its fetch: no check before it waits for a slot…
    released.open();
    await waitUntil(async () => (await w.rows())[0]?.status === "delivered", WAIT_MS, "1's record");
    expect(checks).toBe(0);
    w.at(101); // …but its wait (2 s, real time) makes the fetch's checks stale
    await w.idle();
    expect(checks).toBe(1);
    expect(r.requests.map(body)).toEqual([1]);
    // resumed: 2 gets the slot it gave back
    await t().db.query("update stock_sync.subscriptions set status = 'enabled' where name = $1", [w.name]);
    w.worker.wake();
    await r.waitFor(2, WAIT_MS);
    expect(r.requests.map(body)).toEqual([1, 2]);
  });

  it("a failure that makes news wakes the subscriptions the notice was enqueued for", async () => {
    const r = await receiver(() => ({ status: 500 }));
    const ops = `ops_${count + 1}`;
    const w = await setup({
      url: r.url,
      more: "    retries_until_failure: 1\n    retry_intervals: [60]\n",
      others: `  - name: ${ops}\n    subjects: ["ops.*"]\n    url: "${r.url}"\n`,
    });
    await w.send(1);
    w.worker.wake();
    await waitUntil(async () => w.attempts.length === 1, WAIT_MS, "the record");
    expect(w.attempts[0]![1]).toBe("retry");
    expect(w.woken).toEqual([ops]);
  });

  it("a wake with the queue full reads the status alone, and the worker goes on with what it holds and what comes", async () => {
    const { released, r } = await heldReceiver(1);
    let statusReads = 0;
    const w = await setup({
      url: r.url,
      more: "    concurrency: 1\n",
      hooks: {
        after: (text) => {
          if (isStatusRead(text)) statusReads++;
        },
      },
    });
    await w.send(...full);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS); // 1 on the wire, the rest queued: full
    const next = full.length + 1;
    await w.send(next);
    w.worker.wake();
    await waitUntil(async () => statusReads === 1 && w.worker.stalledMs() === 0, WAIT_MS, "the status read");
    released.open();
    await r.waitFor(next, WAIT_MS);
    expect(r.requests.map(body)).toEqual([...full, next]);
  });

  it("a read of the backlog skips what is in flight: a delivery on the wire is not sent twice", async () => {
    const { released, r } = await heldReceiver(Number.POSITIVE_INFINITY);
    let reads = 0;
    const w = await setup({
      url: r.url,
      more: "    concurrency: 2\n",
      hooks: {
        after: (text) => {
          if (isDueRead(text)) reads++;
        },
      },
    });
    await w.send(1);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS);
    w.worker.wake(); // another read while 1 is on the wire (and still owed)
    await waitUntil(async () => reads === 2 && w.worker.stalledMs() === 0, WAIT_MS, "the second read");
    released.open();
    await waitUntil(async () => (await w.rows())[0]?.status === "delivered", WAIT_MS, "the record");
    await w.idle();
    expect(r.requests).toHaveLength(1);
    expect((await w.rows())[0]!.attempts).toBe(1);
  });

  it("a last check that cannot be made is warned about; the delivery stays owed, nothing starts for 1 s (worker's clock)", async () => {
    const { released, r } = await heldReceiver(1);
    const cap = capturedLog();
    let failing = true;
    const w = await setup({
      url: r.url,
      log: cap.log,
      more: "    concurrency: 1\n",
      hooks: refuseLastCheck(() => failing),
    });
    await w.send(1, 2);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS);
    w.at(101); // 2 waited over 100 ms in the queue: it is checked again, and the check fails
    released.open();
    await waitUntil(async () => cap.warnings().length > 0, WAIT_MS, "the warning");
    failing = false;
    await w.idle();
    const rows = await w.rows();
    expect(cap.warnings()).toEqual([
      expect.objectContaining({
        msg: "delivery attempt not made",
        subscription: w.name,
        delivery: rows[1]!.id,
        err: expect.objectContaining({ message: "last check refused" }),
      }),
    ]);
    expect(rows.map((d) => [d.n, d.status])).toEqual([
      [1, "delivered"],
      [2, "pending"],
    ]);
    w.at(1100);
    w.worker.wake();
    await w.idle();
    expect(r.requests.map(body)).toEqual([1]);
    w.at(1101);
    w.worker.wake();
    await r.waitFor(2, WAIT_MS);
    expect(r.requests.map(body)).toEqual([1, 2]);
  });

  it("fifo: nothing is read while a head is in flight, nothing is sent while paused; a message after an empty backlog goes", async () => {
    const { released, r } = await heldReceiver(1);
    let heads = 0;
    let statusReads = 0;
    const w = await setup({
      url: r.url,
      more: "    ordering: fifo\n",
      hooks: {
        after: (text) => {
          if (isHeadRead(text)) heads++;
          if (isStatusRead(text)) statusReads++;
        },
      },
    });
    await w.send(1);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS);
    expect(heads).toBe(1);
    await w.send(2);
    w.worker.wake(); // 1 is in flight: its outcome decides what goes next
    await waitUntil(async () => statusReads === 2 && w.worker.stalledMs() === 0, WAIT_MS, "the status read");
    expect(heads).toBe(1);
    released.open();
    await r.waitFor(2, WAIT_MS);
    await waitUntil(async () => (await w.rows())[1]?.status === "delivered", WAIT_MS, "2's record");
    await w.idle(); // the backlog is empty now
    await t().db.query("update stock_sync.subscriptions set status = 'paused' where name = $1", [w.name]);
    await w.send(3);
    const statusBefore = statusReads;
    w.worker.wake();
    await waitUntil(
      async () => statusReads === statusBefore + 1 && w.worker.stalledMs() === 0,
      WAIT_MS,
      "the status read",
    );
    // paused: the head is read with the status (one round trip between two parts), never sent
    await w.idle();
    expect(r.requests).toHaveLength(2);
    expect((await w.rows())[2]?.status).toBe("pending");
    await t().db.query("update stock_sync.subscriptions set status = 'enabled' where name = $1", [w.name]);
    w.worker.wake();
    await r.waitFor(3, WAIT_MS);
    expect(r.requests.map(body)).toEqual([1, 2, 3]);
  });

  it("fifo: each payload is read once, ahead; a head retried at once goes with its own payload", async () => {
    const r = await receiver((_req, i) => ({ status: i === 1 ? 500 : 204 }));
    let whole = 0;
    const w = await setup({
      url: r.url,
      more: "    ordering: fifo\n    retry_intervals: [0]\n",
      hooks: {
        after: (text) => {
          if (isWholeHeadRead(text)) whole++;
        },
      },
    });
    await w.send(1, 2, 3, 4);
    w.worker.wake();
    await r.waitFor(5, WAIT_MS);
    await waitUntil(
      async () => (await w.rows()).every((d) => d.status === "delivered"),
      WAIT_MS,
      "the records",
    );
    await w.idle();
    expect(r.requests.map(body)).toEqual([1, 2, 2, 3, 4]);
    // read whole: the first head, 2 again after its failure (3's payload was read ahead), and
    // the empty backlog after 4 (nothing was read ahead)
    expect(whole).toBe(3);
  });

  it("without an observer, outcomes are recorded and the worker goes on", async () => {
    const r = await receiver();
    const cap = capturedLog();
    const w = await setup({ url: r.url, log: cap.log, unobserved: true });
    await w.send(1);
    w.worker.wake();
    await waitUntil(async () => (await w.rows())[0]?.status === "delivered", WAIT_MS, "1's record");
    await w.idle();
    await w.send(2);
    w.worker.wake();
    await r.waitFor(2, WAIT_MS);
    expect(cap.warnings()).toEqual([]);
  });

  it("rate limit: a check after the wait for a slot that cannot be made gives the slot back", async () => {
    const { released, r } = await heldReceiver(1);
    const cap = capturedLog();
    let failing = false;
    const w = await setup({
      url: r.url,
      log: cap.log,
      more: "    concurrency: 1\n    rate_limit: { requests: 1, per: 2s }\n",
      hooks: refuseLastCheck(() => failing),
    });
    await w.send(1, 2);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS); // 1 holds the window's only slot; 2 is queued behind it
    w.at(50);
    released.open(); // 2 waits for the slot (2 s, real time), then is checked again: that fails
    await waitUntil(async () => (await w.rows())[0]?.status === "delivered", WAIT_MS, "1's record");
    failing = true;
    w.at(101);
    await waitUntil(async () => cap.warnings().length > 0, WAIT_MS, "the warning");
    failing = false;
    expect(cap.warnings()[0]).toMatchObject({ msg: "delivery attempt not made", subscription: w.name });
    await w.idle();
    expect(r.requests.map(body)).toEqual([1]);
    // after the back-off, 2 gets the slot it gave back
    w.at(1101);
    w.worker.wake();
    await r.waitFor(2, WAIT_MS);
    expect(r.requests.map(body)).toEqual([1, 2]);
  });

  it("stop: a request still on the wire when the grace ends is aborted, recorded as interrupted and owed again at once, before stop returns", async () => {
    const r = await receiver(() => ({ status: 204, hang: true }));
    const w = await setup({ url: r.url, more: "    timeout: 30s\n" });
    await w.send(1);
    w.worker.wake();
    await r.waitFor(1, WAIT_MS);
    await w.worker.stop(0);
    const [row] = await w.rows();
    expect(row).toMatchObject({
      status: "failed",
      attempts: 1,
      last_error:
        "other: interrupted: stock-sync stopped sending for this subscription (shutdown_grace ended)",
    });
    expect(row!.next_attempt_at.getTime()).toBe(w.t0);
    const { rows: attempts } = await t().db.query<{ error_class: string; next_attempt_at: Date }>(
      "select error_class, next_attempt_at from stock_sync.attempts where delivery_id = $1",
      [row!.id],
    );
    expect(attempts).toEqual([{ error_class: "other", next_attempt_at: new Date(w.t0) }]);
  });

  it("stalledMs counts from the oldest wait on the database: an outcome being recorded, then a read", async () => {
    if (t().backend !== "postgres") return; // the record is held by a row lock in another session
    const r = await receiver();
    const answered = gate();
    const held = gate();
    let reads = 0;
    const w = await setup({
      url: r.url,
      hooks: {
        after: async (text) => {
          if (!isDueRead(text) || ++reads !== 2) return;
          answered.open();
          await held.promise;
        },
      },
    });
    await w.send(1);
    const unlock = gate();
    const locked = gate();
    cleanup.push(() => unlock.open()); // a failed check must not leave the lock held
    const holder = t().db.tx(async (tx) => {
      await tx.query("select 1 from stock_sync.subscriptions where name = $1 for update", [w.name]);
      locked.open();
      await unlock.promise;
    });
    await locked.promise;
    const beforeWake = performance.now();
    w.worker.wake();
    await r.waitFor(1, WAIT_MS);
    // the outcome's record waits for the lock
    await waitUntil(
      async () =>
        (
          await t().db.query<{ n: number }>(
            "select count(*)::int as n from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
          )
        ).rows[0]!.n > 0,
      WAIT_MS,
      "the record to wait",
    );
    const recordWaiting = performance.now();
    expect(reads).toBe(1);
    await t().db.query("select 1"); // a round trip later, a read of the backlog starts and hangs
    w.worker.wake();
    await answered.promise;
    const least = performance.now() - recordWaiting;
    const stalled = w.worker.stalledMs();
    expect(stalled).toBeGreaterThanOrEqual(least); // the record's wait, not the read's
    expect(stalled).toBeLessThanOrEqual(performance.now() - beforeWake);
    held.open();
    unlock.open();
    await holder;
    await waitUntil(async () => (await w.rows())[0]?.status === "delivered", WAIT_MS, "the record");
    await w.idle();
  });
});
