import { expect, inject, it } from "vitest";
import { recordJobRequest } from "../../src/jobs/state.js";
import { recentAnswers } from "../../src/outbox/queries.js";
import { maxInWindow, useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngineProcess } from "../helpers/engine-process.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { fluentFake } from "../helpers/job-fakes.js";

// Issue 15 × the rate limit across restarts (item 6): an import job makes several requests per
// attempt (open, send, each poll), each in the subscription's window. A job still polling when its
// process stops records no attempt, so the next process must learn of those requests some other
// way, or its first window holds them and as many more.
const { cleanup, receiver } = useCleanup();

const WINDOW_MS = 3000;
/** Requests before the first process goes: open, send and four polls, two full windows. */
const BEFORE = 6;
/** Requests the OMS sees in all: a window more of polls, the last one answered COMPLETE. */
const TOTAL = 9;

const config = (url: string, name: string, concurrency = 1) => `delivery:
  lease: 9s
  poll_interval: 0.1s
  shutdown_grace: 1s
subscriptions:
  - name: ${name}
    subjects: [stock.full]
    url: "${url}/api/v4.1/job"
    timeout: 2s
    concurrency: ${concurrency}
    retry_intervals: [0.05]
    rate_limit: { requests: 3, per: ${WINDOW_MS / 1000}s }
    job:
      open: { url: "${url}/api/v4.1/job", body: '{"name": message.snapshot_id}' }
      send: { url: "${url}/api/v4.1/job/{{open.id}}/batch" }
      poll:
        url: "${url}/api/v4.1/job/{{open.id}}/batch/{{send.id}}"
        done_when: 'response.status = "COMPLETE"'
        interval: 20ms
`;

const part = {
  subject: "stock.full",
  payload: JSON.stringify({
    action: "UPSERT",
    entityType: "INVENTORY",
    entities: [{ ref: "A:S1", skuRef: "A", locationRef: "S1", qty: 3 }],
  }),
  sequenced: true,
  headers: { "stock-sync-kind": "full", "stock-sync-snapshot-id": "s1", "stock-sync-part": "1/1" },
};

describeEachDb("import jobs: the rate limit across restarts", (t) => {
  /**
   * An OMS that keeps the job running until its TOTAL-th request, recording every arrival;
   * answering each `delayMs` after it arrived.
   */
  async function oms(delayMs = 0) {
    const box: { count: () => number } = { count: () => 0 };
    const fake = fluentFake({
      final: () => (box.count() >= TOTAL ? "COMPLETE" : "NEVER"),
      weather: { delayMs: () => delayMs },
    });
    const r = await receiver(fake.respond);
    box.count = () => r.requests.length;
    return { fake, r };
  }
  const delivered = async (name: string) =>
    (
      await t().db.query<{ status: string }>(
        "select status from stock_sync.deliveries where subscription = $1",
        [name],
      )
    ).rows[0]?.status === "delivered";

  /** Every request the OMS saw (open, send, polls), by arrival: never more than 3 in a window. */
  const assertWindow = (arrivals: number[], log: string[]) => {
    expect(log.filter((l) => !l.startsWith("poll"))).toHaveLength(2); // opened and sent once
    expect(arrivals).toHaveLength(TOTAL);
    // Before the fix the next process's window was empty: the killed job's polls and three more.
    expect(
      maxInWindow(arrivals, WINDOW_MS),
      `arrivals (ms): ${arrivals.map((a) => a - arrivals[0]!)}`,
    ).toBeLessThanOrEqual(3);
  };

  it("a job still polling when the engine stops: the restarted engine's window holds its polls", async () => {
    const name = "job-restart";
    const { fake, r } = await oms();
    const first = await startEngine(t().db, testConfig(config(r.url, name)));
    cleanup.push(() => first.stop());
    await first.enqueue(part);
    await r.waitFor(BEFORE, 20_000);
    await first.stop();
    const second = await startEngine(t().db, testConfig(config(r.url, name)));
    cleanup.push(() => second.stop());
    await waitUntil(() => delivered(name), 30_000, "the job polled to its end");
    assertWindow(
      r.requests.map((q) => q.at),
      fake.log,
    );
  });

  it.skipIf(!inject("pgTemplate"))(
    "kill -9 of the process polling a job, taken over at once by another: the window still holds",
    async () => {
      if (t().backend !== "postgres") return; // another process needs a server URL
      const name = "job-kill";
      const { fake, r } = await oms();
      const first = await startEngineProcess(t().url!, config(r.url, name));
      cleanup.push(() => first.stop("SIGKILL"));
      const e = await startEngine(t().db, testConfig(config(r.url, name)), { start: false });
      await e.enqueue(part);
      await r.waitFor(BEFORE, 20_000);
      await first.stop("SIGKILL");
      // a process of this host sees the pid gone and takes the lease at once
      await e.engine.start();
      cleanup.push(() => e.stop());
      await waitUntil(() => delivered(name), 30_000, "the job polled to its end");
      assertWindow(
        r.requests.map((q) => q.at),
        fake.log,
      );
    },
  );

  it("the answer times a restart seeds its window with come after the OMS answered each job request", async () => {
    // The OMS answers 300 ms after each arrival: an answer time counted from the request's start
    // (not its end) would precede the answer by that much. Half of it is the slack for timers.
    const DELAY_MS = 300;
    const name = "job-answer-times";
    const { r } = await oms(DELAY_MS);
    const e = await startEngine(t().db, testConfig(config(r.url, name)));
    cleanup.push(() => e.stop());
    await e.enqueue(part);
    await r.waitFor(BEFORE, 20_000);
    await e.stop();
    // the seeded answer times, and the database's time they count from (one transaction: now()
    // is the same in both statements)
    const seeded = await t().db.tx(async (tx) => {
      const { rows } = await tx.query<{ now: number }>("select extract(epoch from now()) * 1000 as now");
      const ages = await recentAnswers(tx, name, 60_000, 10);
      return ages.map((age) => Number(rows[0]!.now) - age);
    });
    // newest answer against newest arrival, and so on: open, send and four polls, none recorded
    // as an attempt (the job was cut short)
    const desc = (a: number[]) => [...a].sort((x, y) => y - x);
    const arrivals = desc(r.requests.map((q) => q.at));
    expect(seeded).toHaveLength(arrivals.length);
    const early = desc(seeded).map((answer, i) => Math.max(0, arrivals[i]! + DELAY_MS / 2 - answer));
    expect(early, "ms by which seeded answers precede arrival + half the OMS's delay").toEqual(
      arrivals.map(() => 0),
    );
  });

  it("job_requests stays small: a write drops its subscription's rows older than its window and a minute", async () => {
    const keepMs = 3000;
    // two hours old, and just inside window + minute, for two subscriptions
    await t().db.query(
      `insert into stock_sync.job_requests (subscription, answered_by)
       select s, now() - a * interval '1 millisecond'
       from unnest(array['pruned', 'other']) s, unnest(array[7200000, $1::int + 30000]) a`,
      [keepMs],
    );
    await recordJobRequest(t().db, "pruned", new Date(), keepMs);
    const left = await t().db.query<{ subscription: string; n: number }>(
      `select subscription, count(*)::int as n from stock_sync.job_requests
       where subscription in ('pruned', 'other') group by subscription order by subscription`,
    );
    // the two-hour-old row of `pruned` is gone; one inside window + minute stays; `other` untouched
    expect(left.rows).toEqual([
      { subscription: "other", n: 2 },
      { subscription: "pruned", n: 2 },
    ]);
  });
});
