import { expect, it } from "vitest";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, type TestEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { startWatchReceiver, type WatchReceiver } from "../helpers/watch-receiver.js";

const { cleanup } = useCleanup();

describeEachDb("delivery handover", (t) => {
  async function watch(answer: Parameters<typeof startWatchReceiver>[0]): Promise<WatchReceiver> {
    const r = await startWatchReceiver(answer);
    cleanup.push(() => r.close());
    return r;
  }

  async function engine(yaml: string): Promise<TestEngine> {
    const e = await startEngine(t().db, testConfig(yaml));
    cleanup.push(() => e.stop());
    return e;
  }

  const config = (name: string, url: string) => `delivery:
  lease: 12s
  poll_interval: 0.1s
  shutdown_grace: 0.3s
subscriptions:
  - name: ${name}
    subjects: ["order.*"]
    url: "${url}"
    ordering: fifo
    timeout: 10s
    retry_intervals: [0.1, 0.1, 0.1, 0.1]
`;

  it("stop: an attempt still in flight after the grace is aborted and recorded before the lease is released", async () => {
    // a slow first answer: the first process stops while its request is in flight
    let slow = true;
    const r = await watch((v) => {
      const delayMs = slow && v.n === 1 ? 8000 : 100;
      if (v.n === 1) slow = false;
      return { status: 204, delayMs };
    });
    const a = await engine(config("h", r.url));
    for (let n = 1; n <= 3; n++)
      await a.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    await waitUntil(async () => r.visits.length >= 1, 10_000, "the first request");
    // a second process stands by (it renews every 4 s) and takes over when the lease is let go
    const b = await engine(config("h", r.url));
    expect(b.engine.owned()).toEqual([]);
    await a.stop(); // grace 0.3 s < the receiver's 8 s
    await waitUntil(
      async () => (await delivered(t().db, "h")) === 3,
      20_000,
      "all three delivered by the second process",
    );
    await b.stop();
    // Before the fix: the second process sent H while the first's H was still open, then H2,
    // and the first one's late answer came after (H, H, H2, H at the receiver).
    expect(r.overlaps()).toEqual([]);
    const order = r.visits.filter((v) => v.answered).map((v) => v.n);
    expect(order).toEqual([1, 2, 3]);
    const { rows } = await t().db.query<{ outcome: string; error: string | null }>(
      `select a.outcome, a.error from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id
       where d.subscription = 'h' order by a.id`,
    );
    expect(rows[0]?.error).toMatch(/^other: interrupted/);
    expect(rows.filter((x) => x.outcome === "delivered")).toHaveLength(3);
  });

  it("a late outcome never undoes what happened meanwhile: the lease moved and the delivery was delivered", async () => {
    const r = await watch(() => ({ status: 500, delayMs: 1500 }));
    const a = await engine(config("late", r.url));
    await a.enqueue({ subject: "order.created", payload: JSON.stringify({ n: 1 }) });
    await waitUntil(async () => r.visits.length >= 1, 10_000, "the request");
    // Meanwhile (as another process that took the lease would): delivered by someone else.
    await t().db.query(
      `update stock_sync.subscriptions set lease_owner = 'elsewhere:1:x', lease_until = now() + interval '1 minute'
       where name = 'late'`,
    );
    await t().db.query("update stock_sync.deliveries set status = 'delivered' where subscription = 'late'");
    await waitUntil(async () => r.visits[0]?.ended, 10_000, "the late 500");
    await new Promise((res) => setTimeout(res, 500)); // the outcome would be written by now
    const { rows } = await t().db.query<{ status: string }>(
      "select status from stock_sync.deliveries where subscription = 'late'",
    );
    expect(rows.map((x) => x.status)).toEqual(["delivered"]);
    const attempts = await t().db.query(
      "select 1 from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id where d.subscription = 'late'",
    );
    expect(attempts.rows).toHaveLength(0);
  });
});

async function delivered(db: import("../../src/db/db.js").Db, sub: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(
    "select count(*)::int as n from stock_sync.deliveries where subscription = $1 and status = 'delivered'",
    [sub],
  );
  return rows[0]?.n ?? 0;
}
