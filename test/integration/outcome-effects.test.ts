import { expect, it } from "vitest";
import {
  type AttemptRecord,
  notifyOnce,
  recordOutcomes,
  recordSuccesses,
  recordSuccessGroups,
} from "../../src/outbox/outcome.js";
import { syncSubscriptions } from "../../src/outbox/queries.js";
import type { AttemptResult, Decision } from "../../src/outbox/retry.js";
import { buildSubscriptions, notificationTargetName } from "../../src/subscriptions/subscriptions.js";
import { insertBacklog } from "../helpers/backlog.js";
import { describeEachDb } from "../helpers/db.js";
import { testConfig } from "../helpers/engine.js";

/**
 * What one recorded attempt does beyond its own row (docs/testing.md, mutation testing of
 * outcome.ts): the delivery's next state, the subscription's failure count and status, and the
 * ops.* notifications, called as the worker calls it, on a real database.
 */

const ON_FAILURE = "https://127.0.0.1:9/failure";
const ON_DEACTIVATION = "https://127.0.0.1:9/deactivation";
const ON_RECOVERED = "https://127.0.0.1:9/recovered";
const all = buildSubscriptions(
  testConfig(
    `subscriptions:\n  - name: s\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n    retries_until_failure: 2\n` +
      `notifications:\n  on_failure: ["${ON_FAILURE}"]\n  on_deactivation: ["${ON_DEACTIVATION}"]\n  on_failure_recovered: ["${ON_RECOVERED}"]\n`,
  ),
);
const sub = all.find((s) => s.name === "s")!;
const HOUR = 3_600_000;
const T0 = new Date("2026-11-28T10:00:00.000Z");
const at = (ms: number) => new Date(T0.getTime() + ms);

const r503: AttemptResult = { kind: "response", status: 503 };
const r204: AttemptResult = { kind: "response", status: 204 };
const retry = (delayMs = 30_000): Decision => ({ kind: "retry", delayMs });

function rec(
  deliveryId: number,
  result: AttemptResult,
  decision: Decision,
  decidedAt = at(100),
): AttemptRecord {
  return {
    deliveryId,
    startedAt: T0,
    durationMs: 99.6,
    result,
    responseBody: "the reply",
    decision,
    decidedAt,
  };
}

describeEachDb("what an attempt's outcome does to its delivery and subscription", (t) => {
  /** Subscription s with `n` pending deliveries (and the notification targets), nothing else. */
  async function fresh(n = 1): Promise<number[]> {
    const db = t().db;
    await db.query("delete from stock_sync.messages");
    await db.query("delete from stock_sync.subscriptions");
    await db.query("delete from stock_sync.notifications_sent");
    await syncSubscriptions(
      db,
      all.map((s) => ({ name: s.name, status: "enabled" })),
    );
    await insertBacklog(db, { tag: "e", n, subscriptions: ["s"] });
    const { rows } = await db.query<{ id: number }>("select id from stock_sync.deliveries order by id");
    return rows.map((r) => Number(r.id));
  }

  /** Records these attempts in one transaction, as the worker does. */
  const record = (
    recs: AttemptRecord[],
    now = at(500),
    more: { owner?: string; onFenced?: (ids: number[]) => void; notifyMinIntervalMs?: number } = {},
  ) =>
    t().db.tx((tx) =>
      recordOutcomes(tx, recs, {
        subscription: sub,
        all,
        now,
        notifyMinIntervalMs: more.notifyMinIntervalMs ?? HOUR,
        owner: more.owner,
        onFenced: more.onFenced,
      }),
    );

  const delivery = async (id: number) =>
    (
      await t().db.query(
        `select status, attempts, updated_at, next_attempt_at, delivered_at, last_status, last_error
         from stock_sync.deliveries where id = $1`,
        [id],
      )
    ).rows[0];
  const attempts = async (id: number) =>
    (
      await t().db.query(
        `select attempted_at, duration_ms, status, error_class, error, response_body, outcome, next_attempt_at
         from stock_sync.attempts where delivery_id = $1 order by id`,
        [id],
      )
    ).rows;
  const subscription = async () =>
    (
      await t().db.query(
        `select status, status_reason, status_changed_at, consecutive_failures, failing_notified,
           last_success_at, last_failure_at, last_status, last_error
         from stock_sync.subscriptions where name = 's'`,
      )
    ).rows[0];
  /** The ops.* notices enqueued, in order: subject and the parts of the payload that matter. */
  const notices = async () =>
    (
      await t().db.query<{ subject: string; payload: Uint8Array }>(
        "select subject, payload from stock_sync.messages where subject like 'ops.%' order by created_at, id",
      )
    ).rows.map((r) => {
      const p = JSON.parse(Buffer.from(r.payload).toString());
      return {
        subject: r.subject,
        kind: p.kind,
        subscription: p.subscription,
        detail: p.detail,
        failures: p.consecutiveFailures,
        status: p.lastStatus,
        error: p.lastError,
      };
    });

  it("a failure: its attempt row, the delivery failed and due after the delay, the subscription's count", async () => {
    const [id] = await fresh();
    expect(await record([rec(id!, r503, retry(30_000))])).toEqual([]);
    expect(await attempts(id!)).toEqual([
      {
        attempted_at: T0,
        duration_ms: 100,
        status: 503,
        error_class: null,
        error: "HTTP 503",
        response_body: "the reply",
        outcome: "retry",
        next_attempt_at: at(30_100),
      },
    ]);
    expect(await delivery(id!)).toEqual({
      status: "failed",
      attempts: 1,
      updated_at: at(100),
      next_attempt_at: at(30_100),
      delivered_at: null,
      last_status: 503,
      last_error: "HTTP 503",
    });
    expect(await subscription()).toMatchObject({
      status: "enabled",
      consecutive_failures: 1,
      failing_notified: false,
      last_failure_at: at(500),
      last_success_at: null,
      last_status: 503,
      last_error: "HTTP 503",
    });
    expect(await notices()).toEqual([]); // one failure of two allowed

    // an error without a reply: its class and message; a 300 is a failure too
    const error: AttemptResult = { kind: "error", errorClass: "timeout", message: "no answer in 10s" };
    await record([rec(id!, error, retry(1000), at(200))], at(600));
    expect((await attempts(id!))[1]).toMatchObject({
      status: null,
      error_class: "timeout",
      error: "timeout: no answer in 10s",
      next_attempt_at: at(1200),
    });
    expect(await delivery(id!)).toMatchObject({
      attempts: 2,
      last_status: null,
      last_error: "timeout: no answer in 10s",
    });
    const [other] = await fresh();
    await record([rec(other!, { kind: "response", status: 300 }, retry())]);
    expect(await delivery(other!)).toMatchObject({ last_status: 300, last_error: "HTTP 300" });
  });

  it("failures reaching retries_until_failure notify `failing` once; the first success after it notifies `recovered`", async () => {
    const [a, b, c] = await fresh(3);
    expect(await record([rec(a!, r503, retry())], at(500))).toEqual([]);
    const wake = await record([rec(b!, r503, retry())], at(600)); // the second: crossed
    expect(wake).toEqual([notificationTargetName(ON_FAILURE)]);
    expect(await notices()).toEqual([
      {
        subject: "ops.subscription.failing",
        kind: "failing",
        subscription: "s",
        detail: "HTTP 503",
        failures: 2,
        status: 503,
        error: "HTTP 503",
      },
    ]);
    expect(await subscription()).toMatchObject({ consecutive_failures: 2, failing_notified: true });
    await record([rec(c!, r503, retry())], at(700)); // beyond: no second notice
    expect(await notices()).toHaveLength(1);

    // a success: the count resets, `recovered` goes out, and the promise of it is kept no more
    const recovered = await record([rec(a!, r204, { kind: "delivered" })], at(800));
    expect(recovered).toEqual([notificationTargetName(ON_RECOVERED)]);
    expect((await notices())[1]).toEqual({
      subject: "ops.subscription.recovered",
      kind: "recovered",
      subscription: "s",
      detail: "delivered again",
      failures: 0,
      status: 204,
      error: null,
    });
    expect(await subscription()).toMatchObject({
      consecutive_failures: 0,
      failing_notified: false,
      last_success_at: at(800),
      last_failure_at: at(700),
      last_status: 204,
      last_error: "HTTP 503", // the last failure's, kept for the operator
    });
    expect(await delivery(a!)).toMatchObject({
      status: "delivered",
      delivered_at: at(100),
      last_error: null,
    });
    expect((await attempts(a!)).at(-1)).toMatchObject({
      outcome: "delivered",
      response_body: null,
      error: null,
    });
  });

  it("a second `failing` within the notifications' min interval is not sent, and then no `recovered` is owed", async () => {
    const [a, b, c, d] = await fresh(4);
    await record([rec(a!, r503, retry()), rec(b!, r503, retry())], at(500));
    await record([rec(a!, r204, { kind: "delivered" })], at(600)); // recovered
    // failing again, within the hour: not sent, nobody to wake
    expect(await record([rec(b!, r503, retry()), rec(c!, r503, retry())], at(700))).toEqual([]);
    expect((await notices()).map((n) => n.kind)).toEqual(["failing", "recovered"]);
    expect(await subscription()).toMatchObject({ consecutive_failures: 2, failing_notified: false });
    await record([rec(b!, r204, { kind: "delivered" })], at(800));
    expect((await notices()).map((n) => n.kind)).toEqual(["failing", "recovered"]);
    // an hour after the first, `failing` is news again
    await record([rec(c!, r503, retry()), rec(d!, r503, retry())], at(HOUR + 500));
    expect((await notices()).map((n) => n.kind)).toEqual(["failing", "recovered", "failing"]);
    // each recovery is news, however soon after the last one
    await record([rec(d!, r204, { kind: "delivered" })], at(HOUR + 550)); // within the hour of the first
    expect((await notices()).map((n) => n.kind)).toEqual(["failing", "recovered", "failing", "recovered"]);
  });

  it("a failure after a success in one batch counts; `failing` then `deactivated` keeps the promise of `recovered`", async () => {
    const [a, b, c] = await fresh(3);
    await record([rec(a!, r204, { kind: "delivered" }), rec(b!, r503, retry())], at(500));
    expect(await subscription()).toMatchObject({ consecutive_failures: 1, last_status: 503 });
    // the second failure crosses retries_until_failure and kills its message: both notices
    await record([rec(c!, r503, { kind: "dead" })], at(600));
    expect((await notices()).map((n) => n.kind).sort()).toEqual(["deactivated", "failing"]);
    expect(await subscription()).toMatchObject({ status: "deactivated", failing_notified: true });
    const { rows } = await t().db.query<{ content_type: string }>(
      "select distinct content_type from stock_sync.messages where subject like 'ops.%'",
    );
    expect(rows).toEqual([{ content_type: "application/json" }]);
  });

  it("a dead message deactivates its subscription, notified once; the delivery keeps its due time", async () => {
    const [a, b] = await fresh(2);
    const before = (await delivery(a!))!.next_attempt_at;
    const wake = await record([rec(a!, r503, { kind: "dead" })], at(500));
    expect(await delivery(a!)).toMatchObject({ status: "dead", attempts: 1, next_attempt_at: before });
    expect((await attempts(a!))[0]).toMatchObject({ outcome: "dead", next_attempt_at: null });
    expect(await subscription()).toMatchObject({
      status: "deactivated",
      status_reason: "a message exhausted its retries",
      status_changed_at: at(500),
      consecutive_failures: 1,
    });
    expect(wake).toEqual([notificationTargetName(ON_DEACTIVATION)]);
    expect(await notices()).toEqual([
      {
        subject: "ops.subscription.deactivated",
        kind: "deactivated",
        subscription: "s",
        detail: "a message exhausted its retries",
        failures: 1,
        status: 503,
        error: "HTTP 503",
      },
    ]);
    // already deactivated: no second `deactivated` (this second failure crosses into `failing`),
    // the reason and time stay
    await record([rec(b!, r503, { kind: "dead" })], at(900));
    expect((await notices()).map((n) => n.kind)).toEqual(["deactivated", "failing"]);
    expect(await subscription()).toMatchObject({ status_changed_at: at(500), consecutive_failures: 2 });
  });

  it("a 410 deactivates its subscription and leaves the delivery owed, due at once; on a paused one it is due after the delay", async () => {
    const [a, b] = await fresh(2);
    const gone: AttemptResult = { kind: "response", status: 410 };
    await record([rec(a!, gone, { kind: "gone", delayMs: 60_000 })], at(500));
    expect(await delivery(a!)).toMatchObject({ status: "failed", attempts: 1, next_attempt_at: at(100) });
    expect((await attempts(a!))[0]).toMatchObject({
      outcome: "gone",
      next_attempt_at: at(100),
      error: "HTTP 410",
    });
    expect(await subscription()).toMatchObject({
      status: "deactivated",
      status_reason: "the receiver answered 410 Gone",
    });
    expect((await notices()).map((n) => [n.kind, n.detail])).toEqual([
      ["deactivated", "the receiver answered 410 Gone"],
    ]);
    // the subscription is not enabled any more: this 410 deactivates nothing, the retry delay holds
    await record([rec(b!, gone, { kind: "gone", delayMs: 60_000 })], at(900));
    expect(await delivery(b!)).toMatchObject({ status: "failed", next_attempt_at: at(60_100) });
    expect((await attempts(b!))[0]).toMatchObject({ next_attempt_at: at(60_100) });
    expect(await notices()).toHaveLength(1);
  });

  it("a throttled retry pauses the subscription, uses up no retry and is no failure", async () => {
    const [a, b] = await fresh(2);
    const r429: AttemptResult = { kind: "response", status: 429 };
    expect(
      await record([rec(a!, r429, { kind: "retry", delayMs: 600_000, throttled: true })], at(500)),
    ).toEqual([]);
    expect(await delivery(a!)).toMatchObject({ status: "failed", attempts: 0, next_attempt_at: at(600_100) });
    expect(await subscription()).toMatchObject({ consecutive_failures: 0, last_failure_at: null });
    const left = async () =>
      (
        await t().db.query<{ s: number }>(
          "select extract(epoch from throttled_until - now())::float8 as s from stock_sync.subscriptions where name = 's'",
        )
      ).rows[0]!.s;
    // paused for the delay, on the database's clock (generous bounds: the test may be slow)
    expect(await left()).toBeGreaterThan(300);
    expect(await left()).toBeLessThanOrEqual(600);
    // a shorter pause asked for later never shortens it
    await record([rec(b!, r429, { kind: "retry", delayMs: 1000, throttled: true })], at(600));
    expect(await left()).toBeGreaterThan(300);
    expect(await delivery(b!)).toMatchObject({ attempts: 0 });
    // a plain retry does use one up
    await record([rec(b!, r503, retry())], at(700));
    expect(await delivery(b!)).toMatchObject({ attempts: 1 });
    expect(await notices()).toEqual([]);
  });

  it("a result for a delivery no longer owed, or of a lease held by another, is not written and is reported", async () => {
    const [a, b] = await fresh(2);
    await t().db.query("update stock_sync.subscriptions set lease_owner = 'me' where name = 's'");
    await t().db.query("update stock_sync.deliveries set status = 'superseded' where id = $1", [b]);
    const fenced: number[][] = [];
    const onFenced = (ids: number[]) => fenced.push(ids);
    await record([rec(a!, r503, retry()), rec(b!, r503, retry())], at(500), { owner: "me", onFenced });
    expect(fenced).toEqual([[b]]);
    expect(await delivery(a!)).toMatchObject({ status: "failed" });
    expect(await attempts(b!)).toEqual([]);
    expect(await delivery(b!)).toMatchObject({ status: "superseded", attempts: 0 });

    // the lease moved on: nothing at all
    expect(await record([rec(a!, r503, { kind: "dead" })], at(600), { owner: "not-me", onFenced })).toEqual(
      [],
    );
    expect(fenced).toEqual([[b], [a]]);
    expect(await delivery(a!)).toMatchObject({ status: "failed", attempts: 1 });
    expect(await subscription()).toMatchObject({ status: "enabled", consecutive_failures: 1 });
    // all written: nothing reported
    await record([rec(a!, r503, retry())], at(700), { owner: "me", onFenced });
    expect(fenced).toHaveLength(2);
    // nobody asked to be told: dropped all the same
    expect(await record([rec(a!, r503, retry())], at(800), { owner: "not-me" })).toEqual([]);
    expect(await delivery(a!)).toMatchObject({ attempts: 2 });
  });

  it("successes after successes: the subscription's time of last success moves at most once a second", async () => {
    const [a, b, c, d] = await fresh(4);
    await record([rec(a!, r204, { kind: "delivered" }), rec(b!, r204, { kind: "delivered" })], at(500));
    expect(await subscription()).toMatchObject({ last_success_at: at(500), last_status: 204 });
    const r200: AttemptResult = { kind: "response", status: 200 };
    await record([rec(c!, r200, { kind: "delivered" })], at(1500)); // a second later exactly: not yet
    expect(await subscription()).toMatchObject({ last_success_at: at(500), last_status: 204 });
    await record([rec(d!, r200, { kind: "delivered" })], at(1501));
    expect(await subscription()).toMatchObject({
      last_success_at: at(1501),
      last_status: 200,
      consecutive_failures: 0,
    });
    expect(await delivery(d!)).toMatchObject({ status: "delivered", attempts: 1, last_status: 200 });
    expect(await notices()).toEqual([]);
  });

  it("the one-statement success path: written when the subscription is not failing, fenced ones reported", async () => {
    const [a, b] = await fresh(2);
    const fenced: number[][] = [];
    const ctx = { subscription: sub, now: at(500), onFenced: (ids: number[]) => fenced.push(ids) };
    expect(await recordSuccesses(t().db, [rec(a!, r204, { kind: "delivered" })], ctx)).toBe(true);
    expect(fenced).toEqual([]); // nothing fenced, nothing reported
    await t().db.query("update stock_sync.deliveries set status = 'superseded' where id = $1", [b]);
    expect(await recordSuccesses(t().db, [rec(b!, r204, { kind: "delivered" })], ctx)).toBe(true);
    expect(fenced).toEqual([[b]]);
    const { onFenced: _, ...untold } = ctx;
    expect(await recordSuccesses(t().db, [rec(b!, r204, { kind: "delivered" })], untold)).toBe(true);
    // failing: nothing written, left to the general path
    await t().db.query("update stock_sync.subscriptions set failing_notified = true where name = 's'");
    const [c] = await fresh(1);
    await t().db.query("update stock_sync.subscriptions set failing_notified = true where name = 's'");
    expect(await recordSuccesses(t().db, [rec(c!, r204, { kind: "delivered" })], ctx)).toBe(false);
    expect(await delivery(c!)).toMatchObject({ status: "pending" });
    // a group with nothing in it is fine
    expect(await recordSuccessGroups(t().db, [{ subscription: "s", recs: [] }], { now: at(500) })).toEqual([
      { ok: false, fenced: [] },
    ]);
  });

  it("notifyOnce: one notice per kind and subject of it within the min interval, then again", async () => {
    await fresh(0);
    const ctx = (now: Date) => ({ all, now, notifyMinIntervalMs: HOUR });
    const facts = { detail: "the snapshot shrank by 90%" };
    const target = notificationTargetName(ON_FAILURE);
    expect(await t().db.tx((tx) => notifyOnce(tx, ctx(at(0)), "snapshot_refused", facts, "stock"))).toEqual([
      target,
    ]);
    expect(
      await t().db.tx((tx) => notifyOnce(tx, ctx(at(HOUR - 1)), "snapshot_refused", facts, "stock")),
    ).toEqual([]);
    // another subject of it, or another kind: news
    expect(await t().db.tx((tx) => notifyOnce(tx, ctx(at(1)), "snapshot_refused", facts, "other"))).toEqual([
      target,
    ]);
    expect(await t().db.tx((tx) => notifyOnce(tx, ctx(at(2)), "snapshot_failed", facts, "stock"))).toEqual([
      target,
    ]);
    // the interval passed (counted from the last one sent)
    expect(
      await t().db.tx((tx) => notifyOnce(tx, ctx(at(HOUR)), "snapshot_refused", facts, "stock")),
    ).toEqual([target]);
    const sent = await notices();
    expect(sent.map((n) => [n.subject, n.subscription])).toEqual([
      ["ops.snapshot.refused", "stock"],
      ["ops.snapshot.refused", "other"],
      ["ops.snapshot.failed", "stock"],
      ["ops.snapshot.refused", "stock"],
    ]);
    expect(sent[0]).toMatchObject({ detail: "the snapshot shrank by 90%", status: null, error: null });
  });
});
