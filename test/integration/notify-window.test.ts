import { beforeEach, expect, it } from "vitest";
import { fixedClock } from "../../src/clock.js";
import { notifyFullNotRun } from "../../src/scheduler/notify.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { describeEachDb } from "../helpers/db.js";
import { resetNotifications, testConfig } from "../helpers/engine.js";
import { REFUSED_URL } from "../helpers/receiver.js";

const T0 = new Date("2026-11-28T10:00:00Z").getTime();
const MIN = 60_000;

describeEachDb("notifications: the min_interval window", (t) => {
  beforeEach(async () => {
    // one database per file: no notice or window of an earlier test carries over
    await resetNotifications(t().db);
  });

  it("a notice at most once per min_interval; the next one as soon as the window has passed (injected clock)", async () => {
    const subscriptions = buildSubscriptions(
      testConfig(`notifications:\n  min_interval: 10m\n  on_failure: ["${REFUSED_URL}/ops"]\n`),
    );
    const clock = fixedClock(new Date(T0));
    const deps = { db: t().db, clock, subscriptions, notifyMinIntervalMs: 10 * MIN };
    const sent = async () => {
      // when each notice says it was raised (the clock's time, in its payload)
      const { rows } = await t().db.query<{ at: string }>(
        "select convert_from(payload, 'UTF8')::jsonb ->> 'at' as at from stock_sync.messages where subject = 'ops.snapshot.failed'",
      );
      return rows.map((r) => (Date.parse(r.at) - T0) / MIN).sort((a, b) => a - b);
    };
    const at = async (ms: number) => {
      clock.set(new Date(T0 + ms));
      await notifyFullNotRun(deps, "the full did not run");
    };
    await at(0);
    await at(5 * MIN);
    await at(10 * MIN - 1);
    expect(await sent()).toEqual([0]);
    await at(10 * MIN); // the window has passed: exactly min_interval after the first
    expect(await sent()).toEqual([0, 10]);
    await at(15 * MIN); // a new window started with the second notice
    await at(20 * MIN - 1);
    expect(await sent()).toEqual([0, 10]);
    await at(20 * MIN);
    expect(await sent()).toEqual([0, 10, 20]);
    // about the stock export (its window is the stock's, not a subscription's)
    const { rows: about } = await t().db.query<{ s: string }>(
      "select distinct convert_from(payload, 'UTF8')::jsonb ->> 'subscription' as s from stock_sync.messages where subject = 'ops.snapshot.failed'",
    );
    expect(about).toEqual([{ s: "stock" }]);
    // one delivery per notice, to the on_failure target
    const { rows } = await t().db.query<{ n: number }>(
      "select count(*)::int as n from stock_sync.deliveries where subscription like 'notify:%'",
    );
    expect(rows[0]!.n).toBe(3);
  });
});
