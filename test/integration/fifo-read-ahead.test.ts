/**
 * fifo reads the payload of the message behind the head while the head is sent (issue 13: a
 * stock part's megabyte took longer to read than to upload). A head that failed and is due again
 * at once must still go with its own payload, never the one read ahead.
 */
import { expect, it } from "vitest";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, subscriptionYaml, testConfig } from "../helpers/engine.js";

const { cleanup, receiver } = useCleanup();

describeEachDb("fifo read ahead", (t) => {
  it("a head retried at once is sent with its own payload, then the ones behind it in order", async () => {
    // the first four requests fail: the first message is retried (due at once) with the second
    // one's payload already read ahead
    const r = await receiver((_req, i) => ({ status: i < 4 ? 500 : 204 }));
    const e = await startEngine(
      t().db,
      testConfig(
        `subscriptions:\n${subscriptionYaml("ahead", r.url, "    ordering: fifo\n    retry_intervals: [0.001, 0.001, 0.001, 0.001, 0.001]\n")}`,
      ),
    );
    cleanup.push(() => e.stop());
    for (const n of [1, 2, 3]) await e.enqueue({ subject: "order.created", payload: `{"n":${n}}` });
    const all = await r.waitFor(7);
    expect(all.map((q) => JSON.parse(q.body.toString()).n)).toEqual([1, 1, 1, 1, 1, 2, 3]);
  });
});
