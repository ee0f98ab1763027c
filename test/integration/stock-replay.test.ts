import { afterEach, beforeAll, beforeEach, expect, it } from "vitest";
import { ConnectorError } from "../../src/errors.js";
import { replay } from "../../src/outbox/admin.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig } from "../helpers/engine.js";
import { startServer } from "../helpers/http.js";
import { startReceiver } from "../helpers/receiver.js";
import { stockFixture } from "../helpers/stock.js";

// Issue 12.6: a replay of an old stock message overwrote newer stock at the OMS.
const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const TOKEN = "replay-test-admin-token";
const YAML = `server:\n  admin_token: "${TOKEN}"\nsubscriptions:\n  - name: oms\n    subjects: [stock.full, stock.delta]\n    url: "http://127.0.0.1:9/unused"\n`;

describeEachDb("stale stock never wins: replay and supersede", (t) => {
  let fx: Awaited<ReturnType<typeof stockFixture>>;
  const db = () => t().db;
  type Row = { id: number; sequence: number; status: string; kind: string };
  const deliveries = async () =>
    (
      await db().query<Row>(
        `select d.id::int as id, d.sequence::int as sequence, d.status, m.headers->>'stock-sync-kind' as kind
         from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
         where d.subscription = 'oms' and m.run_id is not null order by d.sequence`,
      )
    ).rows;
  const setStatus = (id: number, status: string) =>
    db().query("update stock_sync.deliveries set status = $2 where id = $1", [id, status]);
  const change = () =>
    db().query(
      "update inventory.stock_on_hand set quantity = quantity + 3 where (sku, location) in (select sku, location from inventory.stock_on_hand order by sku, location limit 2)",
    );

  beforeAll(async () => {
    fx = await stockFixture(db(), YAML);
  });
  beforeEach(async () => {
    await db().query("delete from stock_sync.attempts");
    await db().query("delete from stock_sync.deliveries");
  });

  it("refuses to replay stock older than delivered stock, unless forced (function, API)", async () => {
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    await change();
    expect((await fx.exporter.run("delta", { trigger: "test" })).status).toBe("enqueued");
    await change();
    expect((await fx.exporter.run("delta", { trigger: "test" })).status).toBe("enqueued");
    const [full, old, newer] = (await deliveries()).slice(-3) as [Row, Row, Row];
    await setStatus(full.id, "delivered");
    await setStatus(old.id, "dead");
    await setStatus(newer.id, "delivered");

    const now = new Date();
    const refused = await replay(db(), { ids: [String(old.id)] }, now).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConnectorError);
    expect(String((refused as Error).message)).toMatch(
      new RegExp(`sequence ${old.sequence}.*sequence ${newer.sequence}.*--force`),
    );
    const range = await replay(db(), { subscription: "oms", since: new Date(0) }, now).catch(
      (e: unknown) => e,
    );
    expect(range).toBeInstanceOf(ConnectorError);
    expect((await deliveries()).find((d) => d.id === old.id)!.status).toBe("dead");

    const s = await startServer(db(), testConfig(YAML));
    cleanup.push(() => s.close());
    const post = (q = "") =>
      fetch(`${s.url}/api/deliveries/${old.id}/replay${q}`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}` },
      });
    const res = await post();
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ code: "stale_stock" });
    expect((await deliveries()).find((d) => d.id === old.id)!.status).toBe("dead");
    const forced = await post("?force=true");
    expect(forced.status).toBe(200);
    expect((await deliveries()).find((d) => d.id === old.id)!.status).toBe("pending");
  });

  it("a newer full supersedes dead stock messages too", async () => {
    await change();
    expect((await fx.exporter.run("delta", { trigger: "test" })).status).toBe("enqueued");
    const dead = (await deliveries()).at(-1)!;
    await setStatus(dead.id, "dead");
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    expect((await deliveries()).find((d) => d.id === dead.id)!.status).toBe("superseded");
  });

  it("a failed attempt never turns a superseded delivery back into failed", async () => {
    const r = await startReceiver((_req, i) => (i === 0 ? { status: 500, hang: true } : { status: 204 }));
    cleanup.push(() => r.close());
    const yaml = `subscriptions:\n  - name: oms\n    subjects: [stock.full, stock.delta]\n    url: "${r.url}"\n    timeout: 3s\n`;
    const e = await startEngine(db(), testConfig(yaml));
    cleanup.push(() => e.stop());
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    const first = (await deliveries()).at(-1)!;
    e.engine.wake(["oms"]);
    await r.waitFor(1);
    // While the first full's request hangs, a newer full supersedes it.
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    const attempts = async () =>
      Number(
        (
          await db().query<{ n: string }>(
            "select count(*) as n from stock_sync.attempts where delivery_id = $1",
            [first.id],
          )
        ).rows[0]!.n,
      );
    expect(await attempts()).toBe(0); // the race window was hit: no outcome yet
    expect((await deliveries()).find((d) => d.id === first.id)!.status).toBe("superseded");
    // The hanging request times out: a failed attempt against a superseded delivery, which the
    // outcome fence (still owed?) leaves unwritten; the newer full goes next.
    const second = await r.waitFor(2);
    expect(second[1]!.headers["stock-sync-sequence"]).toBe(String(first.sequence + 1));
    await new Promise((res) => setTimeout(res, 500));
    expect((await deliveries()).find((d) => d.id === first.id)!.status).toBe("superseded");
    expect(await attempts()).toBe(0);
    expect(
      r.requests.filter((q) => q.headers["stock-sync-sequence"] === String(first.sequence)),
    ).toHaveLength(1);
  });
});
