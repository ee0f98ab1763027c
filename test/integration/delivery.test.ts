import { Webhook } from "standardwebhooks";
import { expect, it } from "vitest";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, type TestEngine, testConfig, waitUntil } from "../helpers/engine.js";

const SECRET_A = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_B = "whsec_dGhpcy1pcy1hLXNlY29uZC1zZWNyZXQtZm9yLXJvdGF0aW9u";

const { cleanup, receiver } = useCleanup();

function sub(name: string, url: string, more = "", intervals = "[0.05, 0.05, 0.05]"): string {
  return `  - name: ${name}\n    subjects: ["order.*"]\n    url: "${url}"\n    retry_intervals: ${intervals}\n${more}`;
}

describeEachDb("delivery engine", (t) => {
  async function engine(yaml: string): Promise<TestEngine> {
    const e = await startEngine(t().db, testConfig(yaml));
    cleanup.push(() => e.stop());
    return e;
  }

  const deliveries = async (subscription: string) =>
    (
      await t().db.query<{ status: string; attempts: number; message_id: string }>(
        "select status, attempts, message_id from stock_sync.deliveries where subscription = $1 order by id",
        [subscription],
      )
    ).rows;

  it("delivers with Standard Webhooks headers that verify with each of two secrets", async () => {
    const r = await receiver();
    const e = await engine(
      `subscriptions:\n${sub("signed", r.url, `    secrets: ["${SECRET_A}", "${SECRET_B}"]\n    headers: { x-team: ops }\n`)}`,
    );
    const id = await e.enqueue({ subject: "order.created", payload: '{"id":"o-1"}' });
    const [req] = await r.waitFor(1);
    expect(req!.method).toBe("POST");
    expect(req!.headers["webhook-id"]).toBe(id);
    expect(req!.headers["stock-sync-subject"]).toBe("order.created");
    expect(req!.headers["x-team"]).toBe("ops");
    expect(req!.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    for (const secret of [SECRET_A, SECRET_B]) {
      expect(new Webhook(secret).verify(req!.body.toString(), req!.headers)).toEqual({ id: "o-1" });
    }
    await waitUntil(async () => (await deliveries("signed"))[0]?.status === "delivered", 5000, "delivered");
  });

  it.each([
    { status: 200, outcome: "delivered" },
    { status: 202, outcome: "delivered" },
    { status: 204, outcome: "delivered" },
    { status: 301, outcome: "retry" },
    { status: 302, outcome: "retry" },
    { status: 400, outcome: "retry" },
    { status: 404, outcome: "retry" },
    { status: 500, outcome: "retry" },
    { status: 410, outcome: "gone" },
  ])("HTTP $status is recorded as $outcome (redirects not followed)", async ({ status, outcome }) => {
    const target = await receiver();
    const r = await receiver(() => ({
      status,
      headers: { location: `${target.url}/moved` },
      body: "x".repeat(10_000),
    }));
    const name = `s${status}`;
    await engine(`subscriptions:\n${sub(name, r.url, "", "[60]")}`).then((e) =>
      e.enqueue({ subject: "order.created", payload: "{}" }),
    );
    const attempt = await waitUntil(async () => {
      const { rows } = await t().db.query<{ outcome: string; status: number; response_body: string | null }>(
        `select a.outcome, a.status, a.response_body from stock_sync.attempts a
         join stock_sync.deliveries d on d.id = a.delivery_id where d.subscription = $1`,
        [name],
      );
      return rows[0];
    });
    expect(attempt).toMatchObject({ outcome, status });
    // a failure's reply is kept, cut to 1 KB; a success's is not kept
    expect(attempt.response_body?.length ?? 0).toBe(status < 300 ? 0 : 1024);
    expect(target.requests).toHaveLength(0);
    if (status === 410) {
      const { rows } = await t().db.query("select status from stock_sync.subscriptions where name = $1", [
        name,
      ]);
      expect(rows[0]).toEqual({ status: "deactivated" });
    }
  });
});
