import { expect, it } from "vitest";
import { setSubscriptionStatus } from "../../src/outbox/admin.js";
import { type AttemptRecord, recordOutcomes } from "../../src/outbox/outcome.js";
import { syncSubscriptions } from "../../src/outbox/queries.js";
import type { Decision } from "../../src/outbox/retry.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { insertBacklog } from "../helpers/backlog.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";

const { cleanup, receiver } = useCleanup();

const HOUR = 3_600_000;
const T0 = new Date("2026-11-28T10:00:00Z").getTime();

const subs = buildSubscriptions(
  testConfig(
    `subscriptions:\n  - name: s\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n` +
      "    retries_until_failure: 2\n" +
      `notifications:\n  min_interval: 1h\n  on_failure: ["http://127.0.0.1:9/ops"]\n` +
      `  on_deactivation: ["http://127.0.0.1:9/ops"]\n  on_failure_recovered: ["http://127.0.0.1:9/ops"]\n`,
  ),
);
const sub = subs.find((s) => s.name === "s")!;

describeEachDb("subscription health and notifications", (t) => {
  async function fresh(): Promise<number> {
    const db = t().db;
    await db.query("delete from stock_sync.messages");
    await db.query("delete from stock_sync.subscriptions");
    await db.query("delete from stock_sync.notifications_sent");
    await syncSubscriptions(db, [{ name: "s", status: "enabled" }]);
    await insertBacklog(db, { tag: "h", n: 1, subscriptions: ["s"] });
    const { rows } = await db.query<{ id: number }>(
      "select id from stock_sync.deliveries where subscription = 's'",
    );
    return rows[0]!.id;
  }

  let tags = 0;
  /** A new message's delivery (an outcome is written only for a delivery still owed). */
  async function another(): Promise<number> {
    const tag = `n${++tags}`;
    await insertBacklog(t().db, { tag, n: 1, subscriptions: ["s"] });
    const { rows } = await t().db.query<{ id: number }>(
      "select d.id from stock_sync.deliveries d where d.message_id = $1",
      [`msg_${tag}_1`],
    );
    return Number(rows[0]!.id);
  }

  const record = (deliveryId: number, atMs: number, decision: Decision, status = 500) => {
    const at = new Date(atMs);
    const rec: AttemptRecord = {
      deliveryId,
      startedAt: at,
      durationMs: 3,
      result: { kind: "response", status: decision.kind === "delivered" ? 204 : status },
      responseBody: null,
      decision,
      decidedAt: at,
    };
    return t().db.tx((tx) =>
      recordOutcomes(tx, [rec], { subscription: sub, all: subs, now: at, notifyMinIntervalMs: HOUR }),
    );
  };
  const fail = (id: number, at: number) => record(id, at, { kind: "retry", delayMs: 1000 });
  const die = (id: number, at: number) => record(id, at, { kind: "dead" });
  const succeed = (id: number, at: number) => record(id, at, { kind: "delivered" });
  const resume = () => setSubscriptionStatus(t().db, "s", "enabled", new Date(), "test");

  const sent = async () => {
    const { rows } = await t().db.query<{ subject: string; n: number }>(
      "select subject, count(*)::int as n from stock_sync.messages where subject like 'ops.%' group by subject",
    );
    return Object.fromEntries(rows.map((r) => [r.subject.replace("ops.subscription.", ""), r.n]));
  };

  it("every deactivation is notified, resume resets the failure count, a recovered follows every failing sent", async () => {
    const id = await fresh();
    await fail(id, T0);
    await fail(id, T0 + 1000);
    await die(id, T0 + 2000);
    expect(await sent()).toEqual({ failing: 1, deactivated: 1 });

    await resume();
    const { rows } = await t().db.query(
      "select consecutive_failures from stock_sync.subscriptions where name = 's'",
    );
    expect(rows[0]).toEqual({ consecutive_failures: 0 });
    // deactivated again a minute later (by the next message: the dead one takes no more
    // outcomes): an operator must hear of it, min_interval or not
    const id2 = await another();
    await fail(id2, T0 + 60_000);
    await die(id2, T0 + 61_000);
    expect(await sent()).toEqual({ failing: 1, deactivated: 2 });

    // after a resume the count starts again, so `failing` can fire again (past min_interval)
    await resume();
    const id3 = await another();
    await fail(id3, T0 + 2 * HOUR);
    await fail(id3, T0 + 2 * HOUR + 1000);
    expect(await sent()).toEqual({ failing: 2, deactivated: 2 });
    await succeed(id3, T0 + 2 * HOUR + 2000);
    expect(await sent()).toEqual({ failing: 2, deactivated: 2, recovered: 1 });

    // a failing sent, then a resume (count reset): the next success still says recovered
    const id4 = await another();
    await fail(id4, T0 + 5 * HOUR);
    await fail(id4, T0 + 5 * HOUR + 1000);
    await resume();
    await succeed(id4, T0 + 5 * HOUR + 2000);
    expect(await sent()).toEqual({ failing: 3, deactivated: 2, recovered: 2 });
    // and only one: the next success has nothing to recover from
    const id5 = await another();
    await succeed(id5, T0 + 5 * HOUR + 3000);
    expect(await sent()).toEqual({ failing: 3, deactivated: 2, recovered: 2 });
  });

  it("a 410 is due at once only when it deactivated the subscription; otherwise not before its retry interval", async () => {
    const id = await fresh();
    await insertBacklog(t().db, { tag: "g", n: 1, subscriptions: ["s"] });
    const { rows: ids } = await t().db.query<{ id: number }>(
      "select id from stock_sync.deliveries where subscription = 's' order by id",
    );
    const at = new Date(T0);
    const gone = (deliveryId: number): AttemptRecord => ({
      deliveryId,
      startedAt: at,
      durationMs: 3,
      result: { kind: "response", status: 410 },
      responseBody: null,
      decision: { kind: "gone", delayMs: 30_000 },
      decidedAt: at,
    });
    // two answers of one batch: the first deactivates, the second finds it deactivated
    await t().db.tx((tx) =>
      recordOutcomes(tx, [gone(id), gone(ids[1]!.id)], {
        subscription: sub,
        all: subs,
        now: at,
        notifyMinIntervalMs: HOUR,
      }),
    );
    const { rows } = await t().db.query<{ status: string; next_attempt_at: Date }>(
      "select status, next_attempt_at from stock_sync.deliveries where subscription = 's' order by id",
    );
    expect(rows.map((r) => [r.status, r.next_attempt_at.getTime() - T0])).toEqual([
      ["failed", 0],
      ["failed", 30_000],
    ]);
    const { rows: a } = await t().db.query<{ next_attempt_at: Date }>(
      "select a.next_attempt_at from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id where d.subscription = 's' order by a.id",
    );
    expect(a.map((r) => r.next_attempt_at.getTime() - T0)).toEqual([0, 30_000]);
    expect(await sent()).toEqual({ deactivated: 1 });
  });

  it("a notification target answering 410 is not hammered: the notification is dead, counted", async () => {
    await t().db.query("delete from stock_sync.messages");
    const failing = await receiver(() => ({ status: 500 }));
    const target = await receiver(() => ({ status: 410 }));
    const outcomes: string[] = [];
    const e = await startEngine(
      t().db,
      testConfig(
        `subscriptions:\n  - name: dies\n    subjects: ["order.*"]\n    url: "${failing.url}"\n    retry_intervals: [0.05]\n` +
          `notifications:\n  on_deactivation: ["${target.url}"]\n`,
      ),
      { onAttempt: (s, _row, outcome) => s.internal && outcomes.push(outcome) },
    );
    cleanup.push(() => e.stop());
    await e.enqueue({ subject: "order.created", payload: "{}" });
    await waitUntil(
      async () => {
        const { rows } = await t().db.query<{ status: string }>(
          `select d.status from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
           where m.subject = 'ops.subscription.deactivated'`,
        );
        return rows[0]?.status === "dead";
      },
      10_000,
      "the notification dead",
    );
    expect(target.requests).toHaveLength(1);
    expect(outcomes).toEqual(["dead"]);
  });
});
