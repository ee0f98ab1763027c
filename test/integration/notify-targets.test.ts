import { expect, it } from "vitest";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";

const { cleanup, receiver } = useCleanup();

const config = (onFailure: string[], onDeactivation: string[] = []) =>
  testConfig(
    `subscriptions:\n  - name: s\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n    status: paused\n` +
      `notifications:\n  on_failure: ${JSON.stringify(onFailure)}\n  on_deactivation: ${JSON.stringify(onDeactivation)}\n`,
  );
const targets = (c: ReturnType<typeof config>) => buildSubscriptions(c).filter((s) => s.internal);

it("notification targets are named by what they are: list order does not matter, one per target", () => {
  const a = "https://hooks.example.com/services/T0/B0/secret-token";
  const b = "https://ops.example.com/alerts";
  const first = targets(config([a, b]));
  const reordered = targets(config([b, a]));
  expect(first.map((s) => s.name).sort()).toEqual(reordered.map((s) => s.name).sort());
  expect(first.find((s) => s.url === a)!.name).toBe(reordered.find((s) => s.url === a)!.name);
  expect(first.map((s) => s.name)).toEqual([
    expect.stringMatching(/^notify:[0-9a-f]{16}$/),
    expect.any(String),
  ]);
  expect(first.some((s) => s.name.includes("secret-token"))).toBe(false);
  // the same target in two lists: one subscription taking both lists' subjects
  const both = targets(config([a], [a]));
  expect(both).toHaveLength(1);
  expect(both[0]!.subjects.sort()).toEqual([
    "ops.import.rejected_rows",
    "ops.snapshot.failed",
    "ops.snapshot.refused",
    "ops.subscription.deactivated",
    "ops.subscription.failing",
  ]);
});

describeEachDb("notification targets", (t) => {
  it("a pending notification goes to its target after the list changes", async () => {
    const ra = await receiver();
    const rb = await receiver();
    // enqueued while the list was [a], delivered after a restart with [b, a]
    const before = await startEngine(t().db, config([ra.url]), { start: false });
    cleanup.push(() => before.stop());
    const first = await before.enqueue({ subject: "ops.subscription.failing", payload: '{"n":1}' });
    const e = await startEngine(t().db, config([rb.url, ra.url]));
    cleanup.push(() => e.stop());
    const second = await e.enqueue({ subject: "ops.subscription.failing", payload: '{"n":2}' });
    await ra.waitFor(2, 10_000);
    await rb.waitFor(1, 10_000);
    expect(ra.requests.map((r) => r.headers["webhook-id"]).sort()).toEqual([first, second].sort());
    expect(rb.requests.map((r) => r.headers["webhook-id"])).toEqual([second]);
  });

  it("notifications pending under the old positional names are adopted by the target at that position", async () => {
    const db = t().db;
    const r = await receiver();
    await db.query(
      `insert into stock_sync.messages (id, subject, payload, content_type)
       values ('msg_legacy_1', 'ops.subscription.failing', convert_to('{}', 'UTF8'), 'application/json')`,
    );
    await db.query("insert into stock_sync.subscriptions (name) values ('notify:on_failure:0')");
    await db.query(
      "insert into stock_sync.deliveries (message_id, subscription) values ('msg_legacy_1', 'notify:on_failure:0')",
    );
    const e = await startEngine(db, config([r.url]));
    cleanup.push(() => e.stop());
    const [req] = await r.waitFor(1, 10_000);
    expect(req!.headers["webhook-id"]).toBe("msg_legacy_1");
    await waitUntil(async () => {
      const { rows } = await db.query(
        "select 1 from stock_sync.subscriptions where name = 'notify:on_failure:0'",
      );
      return rows.length === 0;
    });
  });
});
