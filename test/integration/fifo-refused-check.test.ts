/**
 * Found by sftp-staging-lease.test.ts: a fifo worker whose head is refused by the database's last
 * check (`mayAttempt`: here the lease moved to another process, which this one learns only at its
 * next renewal) read the head and checked it again at once, over and over (#attempt → #done →
 * wake → #fifo → #send → refused). On PostgreSQL that was a busy loop on the database until the
 * renewal stopped the worker; on PGlite each turn was promise callbacks only, so the loop never
 * yielded to the event loop: no timer fired, the renewal that would stop it never ran, and the
 * process spun for good. Now a refusal makes the worker wait (worker.ts #refused). A loop, if it
 * comes back, is cut by the test (a pause written from inside the 50th refused check) so that the
 * run ends.
 */
import { expect, it } from "vitest";
import { setSubscriptionStatus } from "../../src/outbox/admin.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { spyDb } from "../helpers/spy-db.js";

const { cleanup, receiver } = useCleanup();

// a lease of 30 s is renewed every 10 s: the worker learns that it moved only then
const yaml = (url: string) => `delivery:
  lease: 30s
subscriptions:
  - name: s
    subjects: ["order.*"]
    ordering: fifo
    url: "${url}"
    timeout: 2s
`;

/** Refused checks let through before the test pauses the subscription to end a loop. */
const CUT_AT = 50;

describeEachDb("fifo, head refused by the last check", (t) => {
  it("the worker does not check a refused head again at once, in a loop that never yields", async () => {
    const r = await receiver();
    let refused = 0;
    let ticks = 0; // timer callbacks run so far: unchanged across refusals = the loop never yielded
    const ticksAtRefusal: number[] = [];
    const timer = setInterval(() => ticks++, 5);
    cleanup.push(() => clearInterval(timer));
    const db = spyDb(t().db, {
      after: async (text, rows) => {
        if (!text.includes("where d.id = any($1::int8[])") || rows.length > 0) return;
        refused++;
        ticksAtRefusal.push(ticks);
        if (refused === CUT_AT) await setSubscriptionStatus(t().db, "s", "paused", new Date(), "test");
      },
    });
    const e = await startEngine(db, testConfig(yaml(r.url)));
    cleanup.push(() => e.stop());
    expect(e.engine.owned()).toEqual(["s"]);
    // as a process that took the lease over would have written it
    await t().db.query(
      "update stock_sync.subscriptions set lease_owner = 'thief:1:x:y', lease_until = now() + interval '1 hour' where name = 's'",
    );
    const stolenAt = Date.now();
    await e.enqueue({ subject: "order.created", payload: JSON.stringify({ n: 1 }) });
    // two seconds: a worker woken by the engine's poll (each second) and by its own wait after a
    // refusal (a second) checks a few times; one in a loop checks 50 times in ~0.1 s
    await waitUntil(async () => refused >= CUT_AT || Date.now() > stolenAt + 2000, 10_000, "refusals");
    expect(r.requests).toEqual([]); // the checks themselves hold: nothing is sent
    // on PGlite the first refusals come with no timer run in between (ticks unchanged)
    expect(
      refused,
      `refused checks of one head, timer runs at each: ${ticksAtRefusal.slice(0, 8)}`,
    ).toBeLessThanOrEqual(6);
  });
});
