import { setTimeout as sleep } from "node:timers/promises";
import { expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { recentAnswers } from "../../src/outbox/queries.js";
import { maxInWindow, useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { spyDb } from "../helpers/spy-db.js";

const { cleanup, receiver } = useCleanup();

/**
 * What a new process seeds its rate-limit window with is the recorded answer time of each attempt
 * (recentAnswers). The receiver counts arrivals, and a request arrives before its answer, so the
 * window holds across a restart only if every recorded answer time is no earlier than the
 * arrival of its request. A body.template makes the time between the start of an attempt and
 * its request large: the event is reshaped at send time, here by a template that compares every
 * order line with every other (~300 ms for 300 lines on a busy machine; the defect showed with
 * ~20 ms). Small events: PGlite spends no time on large payloads.
 */
const TEMPLATE = `'{"order": data.order_id, "pairs": $count(data.lines.($q := quantity; $$.data.lines[quantity = $q]))}'`;
/** A rate-limited subscription; reshaping its events with TEMPLATE unless `reshaped` is false. */
const config = (url: string, name: string, windowMs: number, reshaped = true) => `delivery:
  lease: 9s
  poll_interval: 0.1s
  shutdown_grace: 1s
subscriptions:
  - name: ${name}
    subjects: ["order.*"]
    url: "${url}"
    timeout: 5s
    concurrency: 2
    rate_limit: { requests: 3, per: ${windowMs / 1000}s }
${reshaped ? `    body: { format: json, template: ${TEMPLATE} }\n` : ""}`;

/** An order event with `lines` order lines: TEMPLATE takes a while over BIG of them. */
const order = (n: number, lines: number) =>
  JSON.stringify({
    type: "created",
    data: {
      order_id: `O-${n}`,
      lines: Array.from({ length: lines }, (_, i) => ({ sku: `SKU-${i}`, quantity: i % 7, price: "12.50" })),
    },
  });
const BIG = 300;

describeEachDb("rate limit across restarts: the recorded answer time", (t) => {
  /** Attempts recorded for the subscription. */
  const recorded = async (name: string) => {
    const { rows } = await t().db.query<{ n: number }>(
      `select count(*)::int as n from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id
       where d.subscription = $1`,
      [name],
    );
    return rows[0]!.n;
  };

  /**
   * Sends three messages with one engine, stops it, and checks what the next process would seed
   * its window with against the receiver's arrivals (this host's clock, the database's too).
   */
  async function seededAgainstArrivals(opts: {
    name: string;
    reshaped?: boolean;
    payload: (n: number) => string;
    db?: Db;
  }): Promise<void> {
    const r = await receiver();
    const e = await startEngine(
      opts.db ?? t().db,
      testConfig(config(r.url, opts.name, 60_000, opts.reshaped)),
    );
    cleanup.push(() => e.stop());
    for (let n = 0; n < 3; n++) await e.enqueue({ subject: "order.created", payload: opts.payload(n) });
    await r.waitFor(3, 20_000);
    await waitUntil(async () => (await recorded(opts.name)) === 3, 10_000, "three attempts recorded");
    await e.stop();
    // the seeded answer times, and the database's time they count from (one transaction: now()
    // is the same in both statements)
    const seeded = await t().db.tx(async (tx) => {
      const { rows } = await tx.query<{ now: number }>("select extract(epoch from now()) * 1000 as now");
      const ages = await recentAnswers(tx, opts.name, 60_000, 10);
      return ages.map((age) => Number(rows[0]!.now) - age);
    });
    expect(seeded).toHaveLength(3);
    // newest answer against newest arrival, and so on: each request has an answer no earlier
    const desc = (a: number[]) => [...a].sort((x, y) => y - x);
    const arrivals = desc(r.requests.map((q) => q.at));
    const early = desc(seeded).map((answer, i) => Math.max(0, arrivals[i]! - answer));
    expect(early, "ms by which seeded answers precede arrivals").toEqual([0, 0, 0]);
  }

  it("the answer times a new process seeds its window with are never earlier than the receiver saw the requests (a slow body.template)", async () => {
    await seededAgainstArrivals({ name: "slow-body", payload: (n) => order(n, BIG) });
  });

  it("nor when the engine's estimate of the database's clock is behind (a heartbeat answered late)", async () => {
    // The estimate puts the database's reading at the middle of the round trip: an answer held
    // back 600 ms after a quick statement puts it ~300 ms behind.
    const db = spyDb(t().db, {
      after: (text) => (text.includes("insert into stock_sync.engines") ? sleep(600) : undefined),
    });
    await seededAgainstArrivals({
      name: "late-heartbeat",
      reshaped: false,
      payload: (n) => order(n, 1),
      db,
    });
  });

  it("large events before the restart, small ones after: never more than the limit in any window", async () => {
    const r = await receiver();
    const name = "slow-then-fast";
    const WINDOW_MS = 3000;
    const first = await startEngine(t().db, testConfig(config(r.url, name, WINDOW_MS)));
    cleanup.push(() => first.stop());
    for (let n = 0; n < 3; n++) await first.enqueue({ subject: "order.created", payload: order(n, BIG) });
    await r.waitFor(3, 20_000);
    await first.stop();
    // the next ones take no time to reshape: they go the moment the seeded window lets them
    for (let n = 3; n < 6; n++) await first.enqueue({ subject: "order.created", payload: order(n, 1) });
    const second = await startEngine(t().db, testConfig(config(r.url, name, WINDOW_MS)));
    cleanup.push(() => second.stop());
    await r.waitFor(6, 30_000);
    expect(
      maxInWindow(
        r.requests.map((q) => q.at),
        WINDOW_MS,
      ),
    ).toBeLessThanOrEqual(3);
  });
});
