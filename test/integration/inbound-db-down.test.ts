import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createTestDb } from "../helpers/db.js";
import { startEngine, type TestEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { startServer, type TestServer } from "../helpers/http.js";
import { quoteIdent, withAdmin } from "../helpers/pg-admin.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";
import { signedHeaders } from "../helpers/signing.js";

const SECRET = `whsec_${randomBytes(24).toString("base64")}`;

function signedEvent(id: string) {
  const body = JSON.stringify({ id, type: "created", data: { order_id: `O-${id}` } });
  return { body, headers: signedHeaders(SECRET, body) };
}

// PostgreSQL only: PGlite lives in this process and cannot be taken away from it.
describe.skipIf(!inject("pgTemplate"))("inbound with the state database down [postgres]", () => {
  let tdb: Awaited<ReturnType<typeof createTestDb>>;
  let name: string;
  let s: TestServer;
  let r: Receiver;
  let e: TestEngine;
  let failed = true;

  const allowConnections = (allow: boolean) =>
    withAdmin((c) => c.query(`alter database ${quoteIdent(name)} with allow_connections ${allow}`));

  beforeAll(async () => {
    tdb = await createTestDb("postgres");
    name = new URL(tdb.url!).pathname.slice(1);
    r = await startReceiver();
    const config = testConfig(
      `server:\n  inbound:\n    secrets: ["${SECRET}"]\n` +
        `subscriptions:\n  - name: erp\n    subjects: ["order.*"]\n    url: "${r.url}"\n    ordering: key\n` +
        `    retry_intervals: [0.05]\n    retries_until_failure: 1000\n`,
    );
    s = await startServer(tdb.db, config);
    e = await startEngine(tdb.db, config);
  });
  afterAll(async () => {
    await allowConnections(true).catch(() => undefined);
    await e?.stop();
    await s?.close();
    await r?.close();
    await tdb?.drop(failed);
  });

  const post = (id: string) => {
    const { body, headers } = signedEvent(id);
    return s.post(body, headers);
  };

  it("answers 503 with Retry-After while the database is away, loses nothing, and recovers without a restart", async () => {
    const before = ["a1", "a2", "a3", "a4", "a5"];
    for (const id of before) expect((await post(id)).status).toBe(202);

    await allowConnections(false);
    await withAdmin((c) =>
      c.query(
        "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
        [name],
      ),
    );
    const during = ["b1", "b2", "b3", "b4", "b5"];
    for (const id of [...during, "a1"]) {
      const res = await post(id);
      expect(res.status).toBe(503);
      expect(res.headers.get("retry-after")).toBe("5");
      expect(await res.json()).toEqual({
        code: "database_unavailable",
        detail: expect.stringContaining("unavailable"),
      });
    }
    expect((await fetch(`${s.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${s.url}/readyz`)).status).toBe(503);
    const status = await fetch(`${s.url}/api/status`);
    expect([status.status, ((await status.json()) as { code: string }).code]).toEqual([
      503,
      "database_unavailable",
    ]);
    expect((await fetch(`${s.url}/metrics`)).status).toBe(200);

    await allowConnections(true);
    // the OMS retries what was refused; the same process takes it once the database is back
    await waitUntil(
      async () => (await post("b1")).status === 202,
      15_000,
      "intake after the database returned",
    );
    for (const id of during.slice(1)) expect((await post(id)).status).toBe(202);
    expect((await post("a1")).status).toBe(200);

    const { rows } = await tdb.db.query<{ id: string }>("select id from stock_sync.inbox order by id");
    expect(rows.map((row) => row.id)).toEqual([...before, ...during]);
    await waitUntil(
      async () => new Set(r.requests.map((q) => q.headers["webhook-id"])).size === 10,
      20_000,
      "every event delivered",
    );
    expect(new Set(r.requests.map((q) => q.headers["webhook-id"]))).toEqual(
      new Set([...before, ...during].map((id) => `evt_${id}`)),
    );
    failed = false;
  });
});
