/**
 * fifo reads a big payload (a stock part) apart from its row, by binary COPY on a real server
 * (issue 13: `pg`'s text path for a bytea cost 15–25 ms of CPU a megabyte). Every byte value,
 * sizes around the cut-off, a head read whole after a failure and the payloads read ahead must
 * all reach the receiver exactly as enqueued, in order.
 */
import { randomBytes } from "node:crypto";
import { expect, it } from "vitest";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, subscriptionYaml, testConfig } from "../helpers/engine.js";

const { cleanup, receiver } = useCleanup();

// every byte value, NUL and invalid UTF-8 included, in a payload of `size` bytes
const bytes = (size: number) => {
  const b = randomBytes(size);
  for (let i = 0; i < Math.min(size, 256); i++) b[i] = i;
  return b;
};

describeEachDb("fifo big payloads", (t) => {
  it("reach the receiver byte for byte, in order, around the inline cut-off and after a failure", async () => {
    // the first request fails: the 2 MB head is read whole again, then the rest read ahead
    const r = await receiver((_req, i) => ({ status: i === 0 ? 500 : 204 }));
    const e = await startEngine(
      t().db,
      testConfig(
        `subscriptions:\n${subscriptionYaml("big", r.url, "    ordering: fifo\n    retry_intervals: [0.001]\n")}`,
      ),
    );
    cleanup.push(() => e.stop());
    const sizes = [2_000_000, 65_536, 65_537, 3, 0, 300_000, 1_100_000];
    const payloads = sizes.map(bytes);
    for (const payload of payloads) {
      await e.enqueue({ subject: "order.created", payload, contentType: "application/octet-stream" });
    }
    const all = await r.waitFor(payloads.length + 1);
    const got = all.slice(1).map((q) => q.body);
    expect(got.map((b) => b.length)).toEqual(sizes);
    for (const [i, payload] of payloads.entries()) expect(got[i]!.equals(payload), `payload ${i}`).toBe(true);
    expect(all[0]!.body.equals(payloads[0]!)).toBe(true);
  });
});
