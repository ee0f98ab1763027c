import { expect, it } from "vitest";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, subscriptionYaml, type TestEngine, testConfig, waitUntil } from "../helpers/engine.js";

const { cleanup, receiver } = useCleanup();

describeEachDb("throttling (429/503 with Retry-After)", (t) => {
  async function engine(yaml: string, extra: Parameters<typeof startEngine>[2] = {}): Promise<TestEngine> {
    const e = await startEngine(t().db, testConfig(yaml), extra);
    cleanup.push(() => e.stop());
    return e;
  }

  const sub = (name: string, url: string, more = "") => `delivery:
  poll_interval: 0.1s
subscriptions:
${subscriptionYaml(name, url, "    ordering: none\n    concurrency: 4\n    retry_intervals: [0.1, 0.1]\n    retries_until_failure: 2\n")}${more}`;

  it("a 429 with Retry-After holds the whole subscription, not only the delivery that got it", async () => {
    let throttledAt = 0;
    const r = await receiver((_, i) => {
      if (i === 0) {
        throttledAt = Date.now();
        return { status: 429, headers: { "retry-after": "2" } };
      }
      return { status: 204 };
    });
    // the hint (2 s) is capped at the last interval (5 s): it applies whole
    const e = await engine(
      sub("paced", r.url).replace("retry_intervals: [0.1, 0.1]", "retry_intervals: [0.1, 5]"),
    );
    for (let n = 0; n < 12; n++)
      await e.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    await r.waitFor(13, 20_000);
    // Requests already on their way when the 429 arrived may land (concurrency 4); nothing that
    // started after it does, for 2 s. Before the fix the other 11 went out at once.
    const early = r.requests.slice(1).filter((q) => q.at < throttledAt + 1900);
    expect(early.length).toBeLessThanOrEqual(3);
    const { rows } = await t().db.query<{ throttled_until: Date | null }>(
      "select throttled_until from stock_sync.subscriptions where name = 'paced'",
    );
    expect(rows[0]?.throttled_until).not.toBeNull();
  });

  it("throttling never deactivates: a receiver pacing us for longer than the schedule is not failing", async () => {
    const r = await receiver((_, i) =>
      i < 4 ? { status: 503, headers: { "retry-after": "0" } } : { status: 204 },
    );
    const e = await engine(sub("slowpoke", r.url).replace("concurrency: 4", "concurrency: 1"));
    await e.enqueue({ subject: "order.created", payload: "{}" });
    await r.waitFor(5, 30_000);
    await waitUntil(
      async () =>
        (
          await t().db.query<{ status: string }>(
            "select status from stock_sync.deliveries where subscription = 'slowpoke'",
          )
        ).rows[0]?.status === "delivered",
      10_000,
      "delivered",
    );
    // Before the fix: 2 retries, then dead, and the subscription deactivated (failing notified).
    const { rows } = await t().db.query<{ status: string; consecutive_failures: number }>(
      "select status, consecutive_failures from stock_sync.subscriptions where name = 'slowpoke'",
    );
    expect(rows[0]).toEqual({ status: "enabled", consecutive_failures: 0 });
  });

  it("due times are on the database's clock: a process whose clock is 10 minutes behind sends at once", async () => {
    const r = await receiver();
    const behind = { now: () => new Date(Date.now() - 10 * 60_000) };
    const e = await engine(sub("late-clock", r.url), { clock: behind });
    await e.enqueue({ subject: "order.created", payload: "{}" });
    // Before the fix the row (due at the database's now()) looked 10 minutes in the future.
    await r.waitFor(1, 10_000);
  });
});
