import { randomBytes } from "node:crypto";
import { expect, it } from "vitest";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { startServer, type TestServer } from "../helpers/http.js";
import { startReceiver } from "../helpers/receiver.js";

const { cleanup } = useCleanup();

const TOKEN = randomBytes(18).toString("base64url");

describeEachDb("operations API", (t) => {
  async function server(yaml: string, extra?: Parameters<typeof startServer>[2]): Promise<TestServer> {
    const s = await startServer(t().db, testConfig(yaml), extra);
    cleanup.push(() => s.close());
    return s;
  }
  const subs = (url = "http://127.0.0.1:9/x", more = "") =>
    `subscriptions:\n  - name: ops-a\n    subjects: ["order.*"]\n    url: "${url}"\n${more}` +
    `  - name: ops-b\n    subjects: ["stock.*"]\n    url: "http://127.0.0.1:9/y"\n    status: paused\n`;
  const withToken = (yaml: string) => `server:\n  admin_token: "${TOKEN}"\n${yaml}`;
  const call = (s: TestServer, method: string, path: string, token?: string) =>
    fetch(s.url + path, { method, headers: token === undefined ? {} : { authorization: `Bearer ${token}` } });
  const statusOf = async (name: string) =>
    (
      await t().db.query<{ status: string }>("select status from stock_sync.subscriptions where name = $1", [
        name,
      ])
    ).rows[0]?.status;

  it("exposes Prometheus metrics: inbound, backlog, attempts, latency, stock runs, process", async () => {
    const r = await startReceiver();
    cleanup.push(() => r.close());
    const s = await server(subs(r.url));
    const e = await startEngine(t().db, testConfig(subs(r.url)), { onAttempt: s.metrics.observeAttempt });
    cleanup.push(() => e.stop());
    await e.enqueue({ subject: "order.created", payload: "{}" });
    await e.enqueue({ subject: "stock.full", payload: "{}" }); // ops-b is paused: stays in the backlog
    await r.waitFor(1);
    // The stock gauges read the runs from the state database (whichever process made them).
    await t().db.query(
      `insert into stock_sync.stock_runs (kind, trigger, snapshot_id, status, started_at, finished_at, rows) values
       ('delta', 'cli', 'd', 'enqueued', now() - interval '5.34 s', now() - interval '5 s', 12),
       ('full', 'cli', 'f', 'enqueued', now() - interval '2.5 s', now(), 1000)`,
    );
    cleanup.push(async () => void (await t().db.query("delete from stock_sync.stock_runs")));
    await fetch(`${s.url}/webhooks/oms`, {
      method: "POST",
      body: "x",
      headers: { "content-type": "text/plain" },
    });

    const res = await waitUntil(async () => {
      const text = await (await fetch(`${s.url}/metrics`)).text();
      return text.includes('outcome="delivered"') ? text : undefined;
    });
    expect(res).toContain('stock_sync_inbound_requests_total{status="415"} 1');
    expect(res).toMatch(/stock_sync_outbox_backlog\{subscription="ops-b",state="pending"\} [1-9]/);
    expect(res).toContain('stock_sync_outbox_backlog{subscription="ops-a",state="dead"} 0');
    expect(res).toContain('stock_sync_delivery_attempts_total{subscription="ops-a",outcome="delivered"} 1');
    expect(res).toContain('stock_sync_delivery_latency_seconds_count{subscription="ops-a"} 1');
    expect(res).toContain('stock_sync_stock_last_run_rows{kind="delta"} 12');
    expect(res).toContain('stock_sync_stock_last_run_rows{kind="full"} 1000');
    expect(res).toContain('stock_sync_stock_last_run_duration_seconds{kind="full"} 2.5');
    expect(res).toMatch(/stock_sync_stock_last_run_timestamp_seconds\{kind="delta"\} \d+/);
    const lag = Number(/stock_sync_stock_delta_lag_seconds ([\d.]+)/.exec(res)?.[1]);
    expect(lag).toBeGreaterThanOrEqual(5);
    expect(lag).toBeLessThan(60);
    expect(res).toContain("process_cpu_user_seconds_total");
  });

  it("reports subscriptions, inbound counts and the stock export's status in /api/status", async () => {
    const plain = await server(subs());
    const body = (await (await fetch(`${plain.url}/api/status`)).json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      subscriptions: expect.arrayContaining([
        expect.objectContaining({ name: "ops-a", status: expect.any(String), backlog: expect.any(Number) }),
        expect.objectContaining({ name: "ops-b", status: "paused" }),
      ]),
      inbound: {
        received: expect.any(Number),
        unrouted: expect.any(Number),
        last_unrouted_subjects: expect.any(Array),
      },
      stock: { last_full: null, last_delta: null, last_delta_sent: null, next_full: null, next_delta: null },
    });
    const next = new Date("2030-01-01T00:00:00Z");
    const withStock = await server(subs(), { scheduleNext: () => ({ full: next, delta: null }) });
    const again = (await (await fetch(`${withStock.url}/api/status`)).json()) as {
      stock: { next_full: string };
    };
    expect(again.stock.next_full).toBe(next.toISOString());
  });

  it("disables the admin API without a token: 403 admin_disabled", async () => {
    const s = await server(subs());
    for (const [method, path] of [
      ["POST", "/api/subscriptions/ops-a/pause"],
      ["POST", "/api/subscriptions/ops-a/resume"],
      ["GET", "/api/deliveries"],
      ["POST", "/api/deliveries/1/replay"],
    ] as const) {
      const res = await call(s, method, path, "anything");
      expect([path, res.status]).toEqual([path, 403]);
      expect(await res.json()).toMatchObject({ code: "admin_disabled" });
    }
    expect(await statusOf("ops-a")).toBe("enabled");
  });

  it("requires the right bearer token: 401 without or with a wrong one, and never echoes it", async () => {
    const s = await server(withToken(subs()));
    for (const token of [undefined, "", "wrong", `${TOKEN}x`, TOKEN.slice(0, -1), TOKEN.toUpperCase()]) {
      const res = await call(s, "POST", "/api/subscriptions/ops-a/pause", token);
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
      const text = await res.text();
      expect(JSON.parse(text)).toMatchObject({ code: "unauthorized" });
      expect(text).not.toContain(TOKEN);
    }
    expect(await statusOf("ops-a")).toBe("enabled");
    const ok = await call(s, "GET", "/api/deliveries", TOKEN);
    expect(ok.status).toBe(200);
  });

  it("pauses and resumes a subscription through the API; an unknown one is 404", async () => {
    const s = await server(withToken(subs()));
    const paused = await call(s, "POST", "/api/subscriptions/ops-a/pause", TOKEN);
    expect(await paused.json()).toEqual({ name: "ops-a", status: "paused", previous: "enabled" });
    expect(await statusOf("ops-a")).toBe("paused");
    const resumed = await call(s, "POST", "/api/subscriptions/ops-a/resume", TOKEN);
    expect(resumed.status).toBe(200);
    expect(await statusOf("ops-a")).toBe("enabled");
    const unknown = await call(s, "POST", "/api/subscriptions/nope/pause", TOKEN);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ code: "not_found" });
  });

  it("lists deliveries with filters and replays a dead one (404 unknown, 409 not dead)", async () => {
    let fail = true;
    const r = await startReceiver(() => ({ status: fail ? 500 : 204 }));
    cleanup.push(() => r.close());
    const yaml = withToken(subs(r.url, "    retry_intervals: [0.02]\n    retries_until_failure: 5\n"));
    const s = await server(yaml);
    const e = await startEngine(t().db, testConfig(yaml));
    cleanup.push(() => e.stop());
    const id = await e.enqueue({ subject: "order.created", payload: "{}" });
    type Listing = { deliveries: { id: number; message_id: string; status: string; subscription: string }[] };
    const list = async (query: string) =>
      (await (await call(s, "GET", `/api/deliveries${query}`, TOKEN)).json()) as Listing;
    const dead = await waitUntil(async () => {
      const found = (await list("?status=dead&subscription=ops-a")).deliveries.find(
        (d) => d.message_id === id,
      );
      return found;
    });
    expect(dead.subscription).toBe("ops-a");
    expect((await list("?status=dead&subscription=ops-b")).deliveries).toEqual([]);
    expect((await list("?limit=1")).deliveries).toHaveLength(1);
    for (const query of ["?status=bogus", "?limit=0", "?limit=abc", "?status=dead&status=failed"]) {
      const res = await call(s, "GET", `/api/deliveries${query}`, TOKEN);
      expect([query, res.status, ((await res.json()) as { code: string }).code]).toEqual([
        query,
        400,
        "invalid_input",
      ]);
    }

    expect((await call(s, "POST", "/api/subscriptions/ops-a/resume", TOKEN)).status).toBe(200);
    fail = false;
    const replayed = await call(s, "POST", `/api/deliveries/${dead.id}/replay`, TOKEN);
    expect(replayed.status).toBe(200);
    expect(await replayed.json()).toEqual({ replayed: [{ id: dead.id, subscription: "ops-a" }] });
    await waitUntil(async () => (await list("?status=delivered")).deliveries.some((d) => d.id === dead.id));
    const again = await call(s, "POST", `/api/deliveries/${dead.id}/replay`, TOKEN);
    expect([again.status, ((await again.json()) as { code: string }).code]).toEqual([409, "not_replayable"]);
    const unknown = await call(s, "POST", "/api/deliveries/999999/replay", TOKEN);
    expect([unknown.status, ((await unknown.json()) as { code: string }).code]).toEqual([404, "not_found"]);
  });
});
