import { expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { openPostgres } from "../../src/db/pg.js";
import { setSubscriptionStatus } from "../../src/outbox/admin.js";
import { maxInWindow, useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, subscriptionYaml, type TestEngine, testConfig, waitUntil } from "../helpers/engine.js";
import type { Recorded } from "../helpers/receiver.js";
import { spyDb } from "../helpers/spy-db.js";

const { cleanup, receiver } = useCleanup();

const bodyOf = (r: Recorded) => JSON.parse(r.body.toString()) as { key: string; n: number };

describeEachDb("delivery flow", (t) => {
  async function engine(yaml: string, db: Db = t().db): Promise<TestEngine> {
    const e = await startEngine(db, testConfig(yaml));
    cleanup.push(() => e.stop());
    return e;
  }

  const sub = (name: string, url: string, more: string) =>
    subscriptionYaml(name, url, `    retry_intervals: [${Array(40).fill(0.05).join(", ")}]\n${more}`);

  it("pause: nothing is sent while paused, everything after resume, in order", async () => {
    const r = await receiver();
    let pausedReads = 0; // the worker read its status as paused (it looked for work and stopped)
    const db = spyDb(t().db, {
      after: (text, rows) => {
        if (text.includes("select name, status from stock_sync.subscriptions"))
          pausedReads += (rows as { status: string }[]).filter((x) => x.status === "paused").length;
      },
    });
    const e = await engine(`subscriptions:\n${sub("p", r.url, "    ordering: fifo\n")}`, db);
    await setSubscriptionStatus(t().db, "p", "paused", new Date(), "test");
    for (let n = 0; n < 20; n++)
      await e.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    // Each enqueue woke the worker: wait for a look at the backlog made after the last one.
    const before = pausedReads;
    await waitUntil(async () => pausedReads > before, 10_000, "the worker woken while paused");
    expect(r.requests).toHaveLength(0);
    await setSubscriptionStatus(t().db, "p", "enabled", new Date(), "test");
    const got = await r.waitFor(20);
    expect(got.map((q) => bodyOf(q).n)).toEqual([...Array(20).keys()]);
  });

  it("a pause committed with no wake-up (another process) stops every request starting 100 ms later", async () => {
    // Concurrency 1 and a slow receiver: the next delivery is fetched (checked) while the one
    // before it is being answered, then waits in the queue longer than the checks stay fresh.
    const SLOW_MS = 700; // under 900 ms: a recheck window raised to 900 ms must be caught
    const r = await receiver(() => ({ status: 204, delayMs: SLOW_MS }));
    const fetched: number[] = []; // delivery ids fetched by the worker, in order
    const refused: number[] = []; // when a last check (mayAttempt) let nothing start
    const db = spyDb(t().db, {
      after: (text, rows) => {
        // the backlog read (dueForSubscriptions: a subscription with nothing due answers a row
        // with its status and no delivery)
        if (text.includes("stock_sync.due_deliveries("))
          fetched.push(
            ...(rows as { id: string | null }[])
              .filter((row) => row.id !== null)
              .map((row) => Number(row.id)),
          );
        if (text.includes("where d.id = any($1::int8[])") && rows.length === 0) refused.push(Date.now());
      },
    });
    // No poll in the meantime: only the last checks can see the pause (as with LISTEN missed).
    const e = await engine(
      `delivery:\n  poll_interval: 60s\nsubscriptions:\n${sub("quiet", r.url, "    concurrency: 1\n")}`,
      db,
    );
    for (let n = 0; n < 20; n++)
      await e.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    await r.waitFor(2, 10_000);
    // The pause goes in while a delivery fetched before it is queued behind the one being sent.
    const sentIds = async () =>
      (
        await t().db.query<{ id: string }>(
          "select a.delivery_id as id from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id where d.subscription = 'quiet'",
        )
      ).rows.map((x) => Number(x.id));
    // fetched and not arrived (nothing fails here, so each fetched delivery arrives once): one
    // is queued behind the request in progress
    const queuedAhead = async () => fetched.length > r.requests.length;
    await waitUntil(queuedAhead, 10_000, "a fetched delivery queued behind the one being sent");
    // as another process would write it, without the NOTIFY that wakes this one
    await t().db.query("update stock_sync.subscriptions set status = 'paused' where name = 'quiet'");
    const pausedAt = Date.now();
    const MARGIN_MS = 150;
    // The queued delivery either meets its last check and stays (right) or is sent (wrong).
    await waitUntil(
      async () =>
        refused.some((at) => at > pausedAt) || r.requests.some((q) => q.at > pausedAt + 100 + MARGIN_MS),
      10_000,
      "the queued delivery checked or sent",
    );
    await waitUntil(
      async () => (await sentIds()).length === r.requests.length,
      10_000,
      "the last request recorded",
    );
    const { rows } = await t().db.query<{ at: Date }>(
      "select a.attempted_at as at from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id where d.subscription = 'quiet'",
    );
    // The guarantee: nothing starts later than the pause's commit + 100 ms. The stated margin of
    // 150 ms is what a loaded machine adds between a check's query and the start's timestamp.
    const late = rows.map((x) => x.at.getTime()).filter((at) => at > pausedAt + 100 + MARGIN_MS);
    expect(late).toEqual([]);
    expect(r.requests.length).toBe(rows.length);
    expect(r.requests.length).toBeLessThan(20);
  });

  it("receiver down, then up: nothing lost, fifo order kept, per-key order kept", async () => {
    let down = true;
    // What each receiver accepted (2xx), in arrival order: failed attempts are not counted.
    const accepted = { fifo: [] as Recorded[], keyed: [] as Recorded[] };
    const fifo = await receiver((req) => {
      if (!down) accepted.fifo.push(req);
      return { status: down ? 503 : 204 };
    });
    const keyed = await receiver((req) => {
      if (!down) accepted.keyed.push(req);
      return { status: down ? 500 : 204 };
    });
    const e = await engine(
      `subscriptions:\n${sub("fifo", fifo.url, "    ordering: fifo\n")}${sub("keyed", keyed.url, "    ordering: key\n    concurrency: 4\n")}`,
    );
    for (let n = 0; n < 30; n++) {
      const key = `order-${n % 3}`;
      await e.enqueue({ subject: "order.updated", payload: JSON.stringify({ key, n }), orderingKey: key });
    }
    await Promise.all([fifo.waitFor(3), keyed.waitFor(6)]);
    expect(accepted.fifo.length + accepted.keyed.length).toBe(0);
    down = false;
    const deliveredOk = async (name: string) => {
      const { rows } = await t().db.query<{ n: number }>(
        "select count(*)::int as n from stock_sync.deliveries where subscription = $1 and status = 'delivered'",
        [name],
      );
      return rows[0]!.n === 30;
    };
    await waitUntil(() => deliveredOk("fifo"), 20_000, "fifo delivered");
    await waitUntil(() => deliveredOk("keyed"), 20_000, "keyed delivered");
    // fifo: once it flows, each accepted once, strictly 0..29
    expect(accepted.fifo.map((q) => bodyOf(q).n)).toEqual([...Array(30).keys()]);
    // key: per key in order, each accepted once, even though keys interleave
    for (const key of ["order-0", "order-1", "order-2"]) {
      const seq = accepted.keyed
        .map(bodyOf)
        .filter((b) => b.key === key)
        .map((b) => b.n);
      expect(seq).toEqual([...Array(30).keys()].filter((n) => `order-${n % 3}` === key));
    }
  });

  it("a failing key holds back only its own later messages", async () => {
    const r = await receiver((req) => ({ status: bodyOf(req).key === "bad" ? 500 : 204 }));
    const e = await engine(`subscriptions:\n${sub("k", r.url, "    ordering: key\n    concurrency: 2\n")}`);
    await e.enqueue({
      subject: "order.created",
      payload: JSON.stringify({ key: "bad", n: 0 }),
      orderingKey: "bad",
    });
    await e.enqueue({
      subject: "order.created",
      payload: JSON.stringify({ key: "bad", n: 1 }),
      orderingKey: "bad",
    });
    for (let n = 2; n < 6; n++) {
      await e.enqueue({
        subject: "order.created",
        payload: JSON.stringify({ key: "good", n }),
        orderingKey: "good",
      });
    }
    await waitUntil(async () => r.requests.filter((q) => bodyOf(q).key === "good").length === 4);
    expect(r.requests.filter((q) => bodyOf(q).key === "bad").every((q) => bodyOf(q).n === 0)).toBe(true);
  });

  it("rate limit 20/s with a backlog: never more than 20 in any 1 s", async () => {
    const r = await receiver();
    const yaml = `subscriptions:\n${sub("limited", r.url, "    concurrency: 8\n    rate_limit: { requests: 20, per: 1s }\n")}`;
    const e = await startEngine(t().db, testConfig(yaml), { start: false });
    cleanup.push(() => e.stop());
    // five windows' worth at the limit (more only made the test longer: 200 took ~10 s)
    for (let n = 0; n < 100; n++)
      await e.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    await e.engine.start();
    const got = await r.waitFor(100, 60_000);
    expect(
      maxInWindow(
        got.map((q) => q.at),
        1000,
      ),
    ).toBeLessThanOrEqual(20);
    // How close to 20/s it gets is a speed, measured on a quiet machine: `npm run bench -- ratelimit`.
  });

  it.each(["fifo", "key"] as const)(
    "ordering %s holds across a handover to another process mid-backlog",
    async (ordering) => {
      const { url } = t();
      const accepted: Recorded[] = [];
      const r = await receiver((req) => {
        accepted.push(req);
        return { status: 204, delayMs: 5 };
      });
      const yaml = `delivery:\n  lease: 2s\nsubscriptions:\n${sub(`handover-${ordering}`, r.url, `    ordering: ${ordering}\n    concurrency: 4\n    timeout: 1s\n`)}`;
      const first = await startEngine(t().db, testConfig(yaml));
      let handedOver = false;
      cleanup.push(() => (handedOver ? undefined : first.stop()));
      for (let n = 0; n < 60; n++) {
        const key = `order-${n % 3}`;
        await first.enqueue({
          subject: "order.updated",
          payload: JSON.stringify({ key, n }),
          orderingKey: key,
        });
      }
      await r.waitFor(15, 15_000);
      await first.stop(); // hands its lease back mid-backlog
      handedOver = true;
      const otherDb = url ? openPostgres(url, { poolSize: 3 }) : t().db;
      if (otherDb !== t().db) cleanup.push(() => otherDb.close());
      await engine(yaml, otherDb);
      await waitUntil(
        async () => {
          const { rows } = await t().db.query<{ n: number }>(
            "select count(*)::int as n from stock_sync.deliveries where subscription = $1 and status = 'delivered'",
            [`handover-${ordering}`],
          );
          return rows[0]!.n === 60;
        },
        30_000,
        "all delivered after the handover",
      );
      // a request cut by the stop is sent again: consecutive repeats collapse, order must hold
      const seq = (key?: string) =>
        accepted
          .map(bodyOf)
          .filter((b) => !key || b.key === key)
          .map((b) => b.n)
          .filter((n, i, xs) => i === 0 || xs[i - 1] !== n);
      if (ordering === "fifo") expect(seq()).toEqual([...Array(60).keys()]);
      for (const key of ["order-0", "order-1", "order-2"])
        expect(seq(key)).toEqual([...Array(60).keys()].filter((n) => `order-${n % 3}` === key));
    },
  );

  it("rate limit 10/s holds under failures, 429s and a slow receiver: failed attempts count too", async () => {
    // every third arrival fails (500 or 429 with no hint), every answer takes 40 ms
    const r = await receiver((_, i) => ({
      status: i % 3 === 1 ? 500 : i % 3 === 2 ? 429 : 204,
      delayMs: 40,
    }));
    const yaml = `subscriptions:\n${sub("bumpy", r.url, "    concurrency: 4\n    rate_limit: { requests: 10, per: 1s }\n")}`;
    const e = await startEngine(t().db, testConfig(yaml), { start: false });
    cleanup.push(() => e.stop());
    for (let n = 0; n < 30; n++)
      await e.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    await e.engine.start();
    await waitUntil(
      async () => {
        const { rows } = await t().db.query<{ n: number }>(
          "select count(*)::int as n from stock_sync.deliveries where subscription = 'bumpy' and status = 'delivered'",
        );
        return rows[0]!.n === 30;
      },
      60_000,
      "all delivered through the failures",
    );
    expect(r.requests.length).toBeGreaterThan(30); // the failures were retried
    expect(
      maxInWindow(
        r.requests.map((q) => q.at),
        1000,
      ),
    ).toBeLessThanOrEqual(10);
  });

  it("three processes share one rate limit and one order", async () => {
    const { url } = t();
    const r = await receiver();
    const yaml = `delivery:\n  lease: 2s\nsubscriptions:\n${sub("shared", r.url, "    ordering: fifo\n    timeout: 1s\n    rate_limit: { requests: 20, per: 1s }\n")}`;
    // Each "process" has its own connection pool where the back end allows several (PostgreSQL).
    const dbs = [t().db, ...[1, 2].map(() => (url ? openPostgres(url, { poolSize: 3 }) : t().db))];
    for (const db of dbs.slice(1)) if (db !== t().db) cleanup.push(() => db.close());
    const engines: TestEngine[] = [];
    for (const db of dbs) {
      const e = await startEngine(db, testConfig(yaml), { start: false });
      cleanup.push(() => e.stop());
      engines.push(e);
    }
    // The backlog is there first; then the three start, as after a deploy.
    for (let n = 0; n < 60; n++)
      await engines[n % 3]!.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    await Promise.all(engines.map((e) => e.engine.start()));
    const got = await r.waitFor(60, 20_000);
    expect(got.map((q) => bodyOf(q).n)).toEqual([...Array(60).keys()]);
    expect(
      maxInWindow(
        got.map((q) => q.at),
        1000,
      ),
    ).toBeLessThanOrEqual(20);
    expect(engines.flatMap((e) => e.engine.owned()).filter((n) => n === "shared")).toHaveLength(1);
  });
});
