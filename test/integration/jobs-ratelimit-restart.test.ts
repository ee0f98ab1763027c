import { expect, inject, it } from "vitest";
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
  /** An OMS that keeps the job running until its TOTAL-th request, recording every arrival. */
  async function oms() {
    const box: { count: () => number } = { count: () => 0 };
    const fake = fluentFake({ final: () => (box.count() >= TOTAL ? "COMPLETE" : "NEVER") });
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
});
