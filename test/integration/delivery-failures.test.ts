import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { beforeEach, expect, it } from "vitest";
import { setSubscriptionStatus } from "../../src/outbox/admin.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import {
  resetNotifications,
  startEngine,
  subscriptionYaml,
  type TestEngine,
  testConfig,
  waitUntil,
} from "../helpers/engine.js";
import { REFUSED_URL } from "../helpers/receiver.js";

const { cleanup, receiver } = useCleanup();

type AttemptRow = {
  outcome: string;
  status: number | null;
  error_class: string | null;
  next_attempt_at: Date | null;
  attempted_at: Date;
};

describeEachDb("delivery failures", (t) => {
  beforeEach(() => resetNotifications(t().db));

  async function engine(yaml: string): Promise<TestEngine> {
    const e = await startEngine(t().db, testConfig(yaml));
    cleanup.push(() => e.stop());
    return e;
  }

  const attempts = async (subscription: string) =>
    (
      await t().db.query<AttemptRow>(
        `select a.outcome, a.status, a.error_class, a.next_attempt_at, a.attempted_at from stock_sync.attempts a
         join stock_sync.deliveries d on d.id = a.delivery_id where d.subscription = $1 order by a.id`,
        [subscription],
      )
    ).rows;

  it.each([
    { status: 429, header: "7", minMs: 7000 },
    { status: 503, header: "date+9", minMs: 8000 },
    { status: 503, header: "3600", minMs: 20_000, maxMs: 20_000 * 1.2 + 1000 }, // capped at the last interval
  ])("HTTP $status with Retry-After $header waits for the hint", async ({ status, header, minMs, maxMs }) => {
    // the date is taken when the response is made: 9 s from then, at whole-second precision
    const value = () => (header === "date+9" ? new Date(Date.now() + 9000).toUTCString() : header);
    const r = await receiver(() => ({ status, headers: { "retry-after": value() } }));
    const name = `ra${status}${header.replace(/\W/g, "")}`;
    const e = await engine(
      `subscriptions:\n${subscriptionYaml(name, r.url, "    retry_intervals: [0.05, 20]\n")}`,
    );
    await e.enqueue({ subject: "order.created", payload: "{}" });
    const [a] = await waitUntil(async () => {
      const rows = await attempts(name);
      return rows.length ? rows : undefined;
    });
    const waitMs = a!.next_attempt_at!.getTime() - a!.attempted_at.getTime();
    expect(a!.outcome).toBe("retry");
    expect(waitMs).toBeGreaterThanOrEqual(minMs);
    if (maxMs) expect(waitMs).toBeLessThanOrEqual(maxMs);
  });

  it("a timeout and a refused connection are retried on the schedule, then dead", async () => {
    const hanging = await receiver(() => ({ status: 200, hang: true }));
    const closed = { url: REFUSED_URL }; // refuses connections, and no parallel test can take it
    const e = await engine(
      `subscriptions:\n${subscriptionYaml("hangs", hanging.url, "    timeout: 0.3\n    retry_intervals: [0.05, 0.05]\n")}${subscriptionYaml("refused", closed.url, "    retry_intervals: [0.05, 0.05]\n")}`,
    );
    await e.enqueue({ subject: "order.created", payload: "{}" });
    for (const [name, errorClass] of [
      ["hangs", "timeout"],
      ["refused", "connect"],
    ] as const) {
      const rows = await waitUntil(
        async () => {
          const list = await attempts(name);
          return list.length === 3 ? list : undefined;
        },
        10_000,
        `${name} attempts`,
      );
      expect(rows.map((r) => r.outcome)).toEqual(["retry", "retry", "dead"]);
      expect(rows.every((r) => r.error_class === errorClass)).toBe(true);
    }
  });

  it("a reply that keeps trickling is cut at the subscription's timeout: the attempt is a timeout", async () => {
    // Headers at once, then a byte every 50 ms for 10 s: undici's own timeouts (headers, and
    // between body chunks) never fire; only the request's deadline (send.ts requestSignal) ends
    // it, so the lease, which must outlast every request, is never outlasted by one.
    const server = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { "content-type": "text/plain" });
      const drip = setInterval(() => res.write("x"), 50);
      const end = setTimeout(() => res.end(), 10_000);
      res.on("close", () => {
        clearInterval(drip);
        clearTimeout(end);
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    cleanup.push(async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const e = await engine(
      `subscriptions:\n${subscriptionYaml("trickles", url, "    timeout: 0.5\n    retry_intervals: [60]\n")}`,
    );
    await e.enqueue({ subject: "order.created", payload: "{}" });
    const [first] = await waitUntil(
      async () => {
        const list = await attempts("trickles");
        return list.length > 0 ? list : undefined;
      },
      5000,
      "the attempt",
    );
    expect([first!.outcome, first!.error_class]).toEqual(["retry", "timeout"]);
  });

  it("a dead message deactivates the subscription and notifies; later messages wait and flow on resume", async () => {
    let healthy = false;
    const r = await receiver(() => ({ status: healthy ? 204 : 500 }));
    const alerts = await receiver();
    const e = await engine(
      `subscriptions:\n${subscriptionYaml("flaky", r.url, "    ordering: fifo\n    retry_intervals: [0.05, 0.05]\n    retries_until_failure: 2\n")}` +
        `notifications:\n  on_failure: ["${alerts.url}/failing"]\n  on_deactivation: ["${alerts.url}/deactivated"]\n  on_failure_recovered: ["${alerts.url}/recovered"]\n`,
    );
    const first = await e.enqueue({ subject: "order.created", payload: '{"n":1}' });
    await waitUntil(async () => {
      const { rows } = await t().db.query<{ status: string }>(
        "select status from stock_sync.subscriptions where name = 'flaky'",
      );
      return rows[0]?.status === "deactivated";
    });
    for (const n of [2, 3]) await e.enqueue({ subject: "order.created", payload: `{"n":${n}}` }); // in this order
    const notes = await alerts.waitFor(2);
    expect(notes.map((n) => n.path).sort()).toEqual(["/deactivated", "/failing"]);
    const deactivated = JSON.parse(notes.find((n) => n.path === "/deactivated")!.body.toString());
    expect(deactivated).toMatchObject({ type: "ops.subscription.deactivated", subscription: "flaky" });
    expect(deactivated.text).toContain("flaky");
    const before = r.requests.length;
    expect(before).toBe(3); // 1 attempt + 2 retries of the first message; nothing after
    healthy = true;
    await setSubscriptionStatus(t().db, "flaky", "enabled", new Date(), "test");
    const all = await r.waitFor(before + 2);
    expect(all.slice(before).map((q) => JSON.parse(q.body.toString()).n)).toEqual([2, 3]);
    expect(all.every((q, i) => i >= before || q.headers["webhook-id"] === first)).toBe(true);
    const recovered = await alerts.waitFor(3);
    expect(recovered.map((n) => n.path)).toContain("/recovered");
  });

  it("failing is notified once per window, however many failures follow", async () => {
    const r = await receiver(() => ({ status: 500 }));
    const alerts = await receiver();
    const e = await engine(
      `subscriptions:\n${subscriptionYaml("noisy", r.url, `    retry_intervals: [${Array(10).fill(0.02).join(", ")}]\n    retries_until_failure: 1\n`)}` +
        `notifications:\n  on_failure: ["${alerts.url}"]\n`,
    );
    for (let i = 0; i < 3; i++) await e.enqueue({ subject: "order.created", payload: "{}" });
    await r.waitFor(12); // no message has died yet: the subscription is still enabled
    await alerts.waitFor(1);
    // Many more failures after the first notice, each one a chance to notify again...
    await r.waitFor(r.requests.length + 6);
    // ...and every notice they enqueued has reached the alerts receiver.
    await waitUntil(
      async () => {
        const { rows } = await t().db.query<{ n: number }>(
          "select count(*)::int as n from stock_sync.deliveries where subscription like 'notify:%' and status in ('pending', 'failed')",
        );
        return rows[0]!.n === 0;
      },
      10_000,
      "the notices delivered",
    );
    expect(alerts.requests.filter((n) => JSON.parse(n.body.toString()).kind === "failing")).toHaveLength(1);
  });
});
