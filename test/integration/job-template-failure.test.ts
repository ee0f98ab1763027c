/**
 * Found by the PGlite loop audit (not of its class: this loop waits a second each turn). A job
 * step's template that cannot render for this message (here `close`'s body, from a `send` reply
 * that lacks the field) throws out of runJob; the worker takes any throw of an attempt for a
 * database failure ("delivery attempt not made": #attempt's catch), records nothing and backs off
 * RETRY_PUMP_MS. A second later the same message's attempt starts the job again (startJob:
 * phase `sending`) and sends its `send` step again, and so on for ever: the part is imported once
 * a second, no attempt is recorded (no retry schedule, never dead, no `failing` notice), and under
 * fifo nothing behind it goes. A cut: the test stops waiting at the third `send`. Now such a
 * failure is the attempt's (errorClass `template`, jobs/run.ts), recorded and retried on schedule.
 */
import { expect, it } from "vitest";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";

const { cleanup, receiver } = useCleanup();

const yaml = (base: string) => `subscriptions:
  - name: j
    subjects: [stock.full]
    url: "${base}/send"
    retry_intervals: [1h]
    job:
      close: { url: "${base}/close", body: 'send.missing_id' }
      poll:
        url: "${base}/poll"
        done_when: 'true'
        interval: 10ms
`;

/** `send` requests let through before the test stops waiting (a loop, if it is one). */
const CUT_AT = 3;

describeEachDb("import job, a step's template fails on this message", (t) => {
  it("the attempt is recorded as failed, on the retry schedule, and the part is sent once", async () => {
    const r = await receiver(() => ({ status: 200, body: "{}" }));
    const e = await startEngine(t().db, testConfig(yaml(r.url)));
    cleanup.push(() => e.stop());
    await e.enqueue({
      subject: "stock.full",
      payload: JSON.stringify({ rows: [{ sku: "A", location: "S1", quantity: 1 }] }),
      sequenced: true,
      headers: { "stock-sync-kind": "full", "stock-sync-snapshot-id": "s", "stock-sync-part": "1/1" },
    });
    const sends = () => r.requests.filter((q) => q.path === "/send").length;
    const attempts = async () =>
      (
        await t().db.query<{ outcome: string; error: string | null }>(
          "select a.outcome, a.error from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id where d.subscription = 'j'",
        )
      ).rows;
    await waitUntil(
      async () => sends() >= CUT_AT || (await attempts()).length > 0,
      15_000,
      "a recorded attempt or a loop",
    );
    expect((await attempts())[0]?.error, `send requests: ${sends()}`).toMatch(/import job/);
    expect(sends()).toBe(1);
  });
});
