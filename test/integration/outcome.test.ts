import { expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import {
  type AttemptRecord,
  recordOutcomes,
  recordSuccesses,
  recordSuccessGroups,
} from "../../src/outbox/outcome.js";
import { syncSubscriptions } from "../../src/outbox/queries.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { insertBacklog } from "../helpers/backlog.js";
import { describeEachDb } from "../helpers/db.js";
import { testConfig } from "../helpers/engine.js";

const [sub] = buildSubscriptions(
  testConfig(`subscriptions:\n  - name: s\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n`),
);

const startedAt = new Date("2026-11-28T10:00:00.000Z");
const decidedAt = new Date("2026-11-28T10:00:00.120Z");
const now = new Date("2026-11-28T10:00:00.500Z");

const delivered = (deliveryId: number): AttemptRecord => ({
  deliveryId,
  startedAt,
  durationMs: 119.6,
  result: { kind: "response", status: 204 },
  responseBody: "ok",
  decision: { kind: "delivered" },
  decidedAt,
});

/** What a recorded attempt leaves behind, without ids. */
async function written(db: Db, deliveryIds: number[]) {
  const { rows: attempts } = await db.query(
    `select attempted_at, duration_ms, status, error_class, error, response_body, outcome, next_attempt_at
     from stock_sync.attempts where delivery_id = any($1::int8[]) order by delivery_id`,
    [deliveryIds],
  );
  const { rows: deliveries } = await db.query(
    // (next_attempt_at is left as enqueued, at the insert's now(): a success does not touch it)
    `select status, attempts, updated_at, delivered_at, last_status, last_error
     from stock_sync.deliveries where id = any($1::int8[]) order by id`,
    [deliveryIds],
  );
  const { rows: subs } = await db.query(
    "select consecutive_failures, last_success_at, last_status, status from stock_sync.subscriptions where name = 's'",
  );
  return { attempts, deliveries, sub: subs[0] };
}

describeEachDb("recording outcomes", (t) => {
  async function fresh(): Promise<number[]> {
    const db = t().db;
    await db.query("delete from stock_sync.messages");
    await db.query("delete from stock_sync.subscriptions");
    await syncSubscriptions(db, [{ name: "s", status: "enabled" }]);
    await insertBacklog(db, { tag: "o", n: 2, subscriptions: ["s"] });
    const { rows } = await db.query<{ id: number }>("select id from stock_sync.deliveries order by id");
    return rows.map((r) => r.id);
  }

  it("a batch of successes in one statement writes what the general path writes", async () => {
    const db = t().db;
    const ids = await fresh();
    expect(await recordSuccesses(db, ids.map(delivered), { subscription: sub!, now })).toBe(true);
    const fast = await written(db, ids);

    const again = await fresh();
    await db.tx((tx) =>
      recordOutcomes(tx, again.map(delivered), {
        subscription: sub!,
        all: [sub!],
        now,
        notifyMinIntervalMs: 0,
      }),
    );
    const general = await written(db, again);

    expect(fast).toEqual(general);
    expect(fast.deliveries.map((d) => d.status)).toEqual(["delivered", "delivered"]);
    expect(fast.sub).toMatchObject({ consecutive_failures: 0, last_status: 204 });
  });

  it("writes nothing while the subscription is failing, so the general path resets it and notifies", async () => {
    const db = t().db;
    const ids = await fresh();
    await db.query("update stock_sync.subscriptions set consecutive_failures = 3 where name = 's'");
    expect(await recordSuccesses(db, ids.map(delivered), { subscription: sub!, now })).toBe(false);
    const untouched = await written(db, ids);
    expect(untouched.attempts).toEqual([]);
    expect(untouched.deliveries.map((d) => d.status)).toEqual(["pending", "pending"]);
    expect(untouched.sub).toMatchObject({ consecutive_failures: 3, last_success_at: null });

    await db.tx((tx) =>
      recordOutcomes(tx, ids.map(delivered), {
        subscription: sub!,
        all: [sub!],
        now,
        notifyMinIntervalMs: 0,
      }),
    );
    expect((await written(db, ids)).sub).toMatchObject({ consecutive_failures: 0 });
  });

  it("several subscriptions' successes in one statement: each written as alone, a failing one left whole to the general path", async () => {
    const db = t().db;
    await db.query("delete from stock_sync.messages");
    await db.query("delete from stock_sync.subscriptions");
    const names = ["s", "t", "u"];
    await syncSubscriptions(
      db,
      names.map((name) => ({ name, status: "enabled" })),
    );
    await insertBacklog(db, { tag: "g", n: 2, subscriptions: names });
    await db.query("update stock_sync.subscriptions set consecutive_failures = 2 where name = 'u'");
    const { rows } = await db.query<{ id: number; subscription: string }>(
      "select id, subscription from stock_sync.deliveries order by id",
    );
    const of = (name: string) => rows.filter((r) => r.subscription === name).map((r) => r.id);
    const result = await recordSuccessGroups(
      db,
      names.map((name) => ({ subscription: name, recs: of(name).map(delivered) })),
      { now },
    );
    expect(result).toEqual([
      { ok: true, fenced: [] },
      { ok: true, fenced: [] },
      { ok: false, fenced: [] },
    ]);
    const status = await db.query<{ subscription: string; status: string }>(
      "select subscription, status from stock_sync.deliveries order by subscription, id",
    );
    expect(status.rows.map((r) => `${r.subscription}:${r.status}`)).toEqual([
      "s:delivered",
      "s:delivered",
      "t:delivered",
      "t:delivered",
      "u:pending",
      "u:pending",
    ]);
    const subs = await db.query<{ name: string; last_status: number | null; n: number }>(
      `select name, last_status, (select count(*)::int from stock_sync.attempts a join stock_sync.deliveries d
         on d.id = a.delivery_id where d.subscription = s.name) as n
       from stock_sync.subscriptions s order by name`,
    );
    expect(subs.rows).toEqual([
      { name: "s", last_status: 204, n: 2 },
      { name: "t", last_status: 204, n: 2 },
      { name: "u", last_status: null, n: 0 },
    ]);
  });

  it("the shared statement's fence: a delivery no longer owed, or of a lease held by another, is not written", async () => {
    const db = t().db;
    await db.query("delete from stock_sync.messages");
    await db.query("delete from stock_sync.subscriptions");
    await syncSubscriptions(db, [
      { name: "s", status: "enabled" },
      { name: "t", status: "enabled" },
    ]);
    await insertBacklog(db, { tag: "f", n: 2, subscriptions: ["s", "t"] });
    await db.query(
      "update stock_sync.subscriptions set lease_owner = case name when 's' then 'me' else 'other' end",
    );
    const { rows } = await db.query<{ id: number; subscription: string }>(
      "select id, subscription from stock_sync.deliveries order by id",
    );
    const s = rows.filter((r) => r.subscription === "s").map((r) => r.id);
    const tIds = rows.filter((r) => r.subscription === "t").map((r) => r.id);
    await db.query("update stock_sync.deliveries set status = 'superseded' where id = $1", [s[1]]);
    const result = await recordSuccessGroups(
      db,
      [
        { subscription: "s", recs: s.map(delivered) },
        { subscription: "t", recs: tIds.map(delivered) },
      ],
      { now, owner: "me" },
    );
    expect(result).toEqual([
      { ok: true, fenced: [s[1]] },
      { ok: true, fenced: tIds },
    ]);
    const status = await db.query<{ status: string }>("select status from stock_sync.deliveries order by id");
    expect(status.rows.map((r) => r.status).sort()).toEqual([
      "delivered",
      "pending",
      "pending",
      "superseded",
    ]);
  });
});
