import { expect, it } from "vitest";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { startEngineProcess } from "../helpers/engine-process.js";
import { fluentFake } from "../helpers/job-fakes.js";

// Issue 15: kill -9 while a job is being polled: the next process polls the same job to its end,
// neither re-opening it nor sending the part again.
const { cleanup, receiver } = useCleanup();

describeEachDb("import jobs across kill -9", (t) => {
  it("a job polled by a killed process is polled to its end by the next one, not re-opened or re-sent", async (ctx) => {
    if (!t().url) return ctx.skip(); // a second process needs a server database
    let finish = false;
    const fake = fluentFake({ final: () => (finish ? "COMPLETE" : "NEVER") });
    const r = await receiver(fake.respond);
    const yaml = `delivery:\n  lease: 5s\n  poll_interval: 0.2s\nsubscriptions:
  - name: fluent-kill
    subjects: [stock.full]
    url: "${r.url}/api/v4.1/job"
    timeout: 2s
    retry_intervals: [0.05]
    job:
      open: { url: "${r.url}/api/v4.1/job", body: '{"name": message.snapshot_id}' }
      send: { url: "${r.url}/api/v4.1/job/{{open.id}}/batch" }
      poll:
        url: "${r.url}/api/v4.1/job/{{open.id}}/batch/{{send.id}}"
        done_when: 'response.status = "COMPLETE"'
        interval: 20ms
`;
    const first = await startEngineProcess(t().url!, yaml);
    cleanup.push(() => first.stop("SIGKILL"));
    const producer = await startEngine(t().db, testConfig(yaml), { start: false });
    cleanup.push(() => producer.stop());
    const entities = [{ ref: "A:S1", skuRef: "A", locationRef: "S1", qty: 3 }];
    const id = await producer.enqueue({
      subject: "stock.full",
      payload: JSON.stringify({ action: "UPSERT", entityType: "INVENTORY", entities }),
      sequenced: true,
      headers: { "stock-sync-kind": "full", "stock-sync-snapshot-id": "s1", "stock-sync-part": "1/1" },
    });
    await waitUntil(
      async () => fake.log.filter((l) => l === "poll B1 RUNNING").length >= 2,
      20_000,
      "polling",
    );
    await first.stop("SIGKILL");
    finish = true;
    const second = await startEngine(t().db, testConfig(yaml));
    cleanup.push(() => second.stop());
    await waitUntil(
      async () =>
        (
          await t().db.query<{ status: string }>(
            "select status from stock_sync.deliveries where message_id = $1",
            [id],
          )
        ).rows[0]?.status === "delivered",
      30_000,
      "delivered by the second process",
    );
    expect(fake.log.filter((l) => !l.startsWith("poll"))).toEqual(["open J1", `batch J1/B1 ${id}`]);
    expect(fake.log).toContain("poll B1 COMPLETE");
    expect(fake.applied.get("A|S1")).toBe(3);
  });
});
