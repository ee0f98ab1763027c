import { expect, it } from "vitest";
import { replay, setSubscriptionStatus } from "../../src/outbox/admin.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";

const { cleanup, receiver } = useCleanup();

describeEachDb("ordering: key and dead messages", (t) => {
  it("a dead message holds its key: resume, then replay, still delivers the key in order", async () => {
    const db = t().db;
    let replayed = false;
    // the order's first event fails until it is replayed; everything else is taken
    const r = await receiver((req) =>
      req.body.toString().includes('"first"') && !replayed ? { status: 500 } : { status: 204 },
    );
    const e = await startEngine(
      db,
      testConfig(
        `subscriptions:\n  - name: orders\n    subjects: ["order.*"]\n    url: "${r.url}"\n` +
          "    ordering: key\n    concurrency: 4\n    retry_intervals: [0.05]\n",
      ),
    );
    cleanup.push(() => e.stop());
    const first = await e.enqueue({ subject: "order.created", payload: '{"e":"first"}', orderingKey: "O-1" });
    const second = await e.enqueue({
      subject: "order.cancelled",
      payload: '{"e":"second"}',
      orderingKey: "O-1",
    });
    await waitUntil(
      async () => {
        const { rows } = await db.query<{ status: string }>(
          "select status from stock_sync.subscriptions where name = 'orders'",
        );
        return rows[0]?.status === "deactivated";
      },
      10_000,
      "deactivated by the dead message",
    );

    // the runbook's order: resume first; another order's event shows the backlog was read since
    await setSubscriptionStatus(db, "orders", "enabled", new Date(), "test");
    const other = await e.enqueue({ subject: "order.created", payload: '{"e":"other"}', orderingKey: "O-2" });
    await waitUntil(
      async () => r.requests.some((q) => q.headers["webhook-id"] === other),
      10_000,
      "other order sent",
    );
    replayed = true;
    expect(await replay(db, { ids: [first] }, new Date())).toHaveLength(1);
    await waitUntil(
      async () => {
        const { rows } = await db.query<{ n: number }>(
          "select count(*)::int as n from stock_sync.deliveries where subscription = 'orders' and status = 'delivered'",
        );
        return rows[0]!.n === 3;
      },
      10_000,
      "all delivered",
    );
    const o1 = r.requests.map((q) => q.headers["webhook-id"]).filter((id) => id !== other);
    // the first event's failed attempts, then (replayed) the first, then the second: never the second before
    expect(o1.slice(-2)).toEqual([first, second]);
    expect(o1.indexOf(second)).toBe(o1.length - 1);
  });
});
