import { expect, inject, it } from "vitest";
import { maxInWindow, useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngineProcess } from "../helpers/engine-process.js";
import { startEngine, waitUntil, testConfig } from "../helpers/engine.js";

const { cleanup, receiver } = useCleanup();

const WINDOW_MS = 4000;
const config = (url: string) => `delivery:
  lease: 9s
  poll_interval: 0.1s
  shutdown_grace: 1s
subscriptions:
  - name: limited
    subjects: ["order.*"]
    url: "${url}"
    timeout: 2s
    concurrency: 2
    rate_limit: { requests: 3, per: ${WINDOW_MS / 1000}s }
`;

describeEachDb("rate limit across restarts", (t) => {
  it("a restart (stop, start) keeps the receiver's window: never more than the limit in any window", async () => {
    const r = await receiver();
    const first = await startEngine(t().db, testConfig(config(r.url)));
    cleanup.push(() => first.stop());
    for (let n = 0; n < 8; n++)
      await first.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    await r.waitFor(3, 10_000); // the first window's three
    await first.stop();
    const second = await startEngine(t().db, testConfig(config(r.url)));
    cleanup.push(() => second.stop());
    await r.waitFor(8, 30_000);
    // Before the fix the new process started with an empty window: six arrived within one.
    expect(
      maxInWindow(
        r.requests.map((q) => q.at),
        WINDOW_MS,
      ),
    ).toBeLessThanOrEqual(3);
  });

  it.skipIf(!inject("pgTemplate"))(
    "kill -9 of the sender, taken over at once by another: the window still holds",
    async () => {
      if (t().backend !== "postgres") return; // another process needs a server URL
      const r = await receiver();
      const first = await startEngineProcess(t().url!, config(r.url));
      cleanup.push(() => first.stop("SIGKILL"));
      const e = await startEngine(t().db, testConfig(config(r.url)), { start: false });
      for (let n = 0; n < 8; n++)
        await e.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
      await r.waitFor(2, 10_000);
      await first.stop("SIGKILL");
      // a process of this host sees the pid gone and takes the lease at once
      await e.engine.start();
      cleanup.push(() => e.stop());
      await waitUntil(async () => e.engine.owned().length === 1, 5000, "the takeover");
      await r.waitFor(8, 30_000);
      expect(
        maxInWindow(
          r.requests.map((q) => q.at),
          WINDOW_MS,
        ),
      ).toBeLessThanOrEqual(3);
    },
  );
});
