import { expect, inject, it } from "vitest";
import { maxInWindow, useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { type EngineProcess, startEngineProcess } from "../helpers/engine-process.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { seededRandom } from "../helpers/random.js";
import { startWatchReceiver } from "../helpers/watch-receiver.js";

const { cleanup } = useCleanup();
const MESSAGES = 8;
const WINDOW_MS = 5000;

describeEachDb("handover between three processes", (t) => {
  it.skipIf(!inject("pgTemplate"))(
    "SIGTERM of the lease holder mid-stream, slow receiver: no overlapping attempt, fifo order, the rate limit in every window",
    async () => {
      if (t().backend !== "postgres") return; // three processes need a server URL
      const random = seededRandom("handover receiver delays");
      const r = await startWatchReceiver(() => ({
        status: 204,
        delayMs: 2000 + Math.round(random() * 3000),
      }));
      cleanup.push(() => r.close());
      const yaml = `delivery:
  lease: 10s
  poll_interval: 0.2s
  shutdown_grace: 1s
subscriptions:
  - name: slow
    subjects: ["order.*"]
    url: "${r.url}"
    ordering: fifo
    timeout: 8s
    retry_intervals: [0.5, 0.5, 0.5, 0.5, 0.5]
    rate_limit: { requests: 4, per: ${WINDOW_MS / 1000}s }
`;
      const procs: EngineProcess[] = [];
      for (let i = 0; i < 3; i++) {
        const p = await startEngineProcess(t().url!, yaml);
        cleanup.push(() => p.stop("SIGKILL"));
        procs.push(p);
      }
      const producer = await startEngine(t().db, testConfig(yaml), { start: false });
      cleanup.push(() => producer.stop());
      for (let n = 1; n <= MESSAGES; n++)
        await producer.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
      await waitUntil(async () => r.visits.length >= 3, 30_000, "three requests");
      const { rows } = await t().db.query<{ o: string }>(
        "select lease_owner as o from stock_sync.subscriptions where name = 'slow'",
      );
      const holder = procs.find((p) => p.owner === rows[0]?.o);
      expect(holder, "one of the three holds the lease").toBeDefined();
      expect(await holder!.stop("SIGTERM")).toBe(0);
      await waitUntil(
        async () => {
          const { rows } = await t().db.query<{ n: number }>(
            "select count(*)::int as n from stock_sync.deliveries where subscription = 'slow' and status = 'delivered'",
          );
          return rows[0]!.n === MESSAGES;
        },
        90_000,
        "every message delivered after the handover",
      );
      expect(r.overlaps()).toEqual([]);
      // fifo: each message's first answered request comes after the previous one's
      const answered = r.visits.filter((v) => v.answered);
      const firsts = [...new Set(answered.map((v) => v.n))];
      expect(firsts).toEqual([...Array(MESSAGES).keys()].map((i) => i + 1));
      for (const v of r.visits) {
        const before = answered.find((a) => a.n === v.n - 1);
        expect(
          before && before.ended! <= v.arrived,
          `message ${v.n} arrived before ${v.n - 1} was answered`,
        ).toBe(v.n === 1 ? undefined : true);
      }
      expect(
        maxInWindow(
          r.visits.map((v) => v.arrived).sort((a, b) => a - b),
          WINDOW_MS,
        ),
      ).toBeLessThanOrEqual(4);
    },
    150_000,
  );
});
