import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { openPostgres } from "../../src/db/pg.js";
import { describeError } from "../../src/http/errors.js";
import type { Received } from "../../src/inbound/batch.js";
import { createIntake, type Intake } from "../../src/inbound/intake.js";
import { enqueue } from "../../src/outbox/enqueue.js";
import { OUTBOX_CHANNEL } from "../../src/outbox/queries.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { quietLog, testConfig, waitUntil } from "../helpers/engine.js";
import { startServer } from "../helpers/http.js";
import { signedHeaders } from "../helpers/signing.js";

const { cleanup: toClose } = useCleanup();
const cleanup = (fn: () => Promise<unknown>) => toClose.push(fn);
const SECRET = `whsec_${randomBytes(24).toString("base64")}`;

// two subscriptions take order.created, one order.*, none stock.*: fan-out differs per subject
const SUBS =
  `subscriptions:\n` +
  `  - name: all-orders\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n    status: paused\n` +
  `  - name: created\n    subjects: ["order.created"]\n    url: "http://127.0.0.1:9/x"\n    status: paused\n` +
  `  - name: stock\n    subjects: ["stock.*"]\n    url: "http://127.0.0.1:9/x"\n    status: paused\n`;
const subscriptions = buildSubscriptions(testConfig(SUBS));

const received = (id: string, opts: { type?: string; orderId?: string; now?: Date } = {}): Received => {
  const type = opts.type ?? "created";
  const body = JSON.stringify({ id, type, data: { order_id: opts.orderId ?? `O-${id}` } });
  return {
    event: { id, subject: `order.${type}`, orderId: opts.orderId ?? `O-${id}` },
    payload: { body: Buffer.from(body), contentType: "application/json" },
    now: opts.now ?? new Date(),
  };
};

function intaker(db: Db, subs = subscriptions) {
  const sizes: number[] = [];
  const warnings: string[] = [];
  const log = Object.assign(Object.create(quietLog), {
    warn: (_: unknown, msg: string) => warnings.push(msg),
  }) as typeof quietLog;
  const i = createIntake({ db, log, subscriptions: subs, onBatch: (n) => sizes.push(n) });
  return { ...i, sizes, warnings };
}

const countWhere = async (db: Db, table: string, column: string, prefix: string) =>
  (
    await db.query<{ n: number }>(
      `select count(*)::int as n from stock_sync.${table} where ${column} like $1 || '%'`,
      [prefix],
    )
  ).rows[0]!.n;

describeEachDb("inbound intake (group commit)", (t) => {
  it("writes the inbox row, and the message and deliveries enqueue writes, column for column", async () => {
    const now = new Date("2030-01-02T03:04:05.678Z");
    const got = await intaker(t().db).intake(received("same-1", { now }));
    expect(got).toEqual({
      duplicate: false,
      messageId: "evt_same-1",
      subscriptions: ["all-orders", "created"],
    });
    const { body } = received("same-1").payload;
    await t().db.tx((tx) =>
      enqueue(tx, subscriptions, {
        id: "ref-same-1",
        subject: "order.created",
        payload: body,
        contentType: "application/json",
        orderingKey: "O-same-1",
        createdAt: now,
      }),
    );
    const inbox = await t().db.query("select * from stock_sync.inbox where id = 'same-1'");
    expect(inbox.rows).toEqual([
      { id: "same-1", subject: "order.created", received_at: now, message_id: "evt_same-1", routed_to: 2 },
    ]);
    // every column but the ids; the timestamps all equal the message's created_at in both
    const shape = (id: string) =>
      t().db.query(
        `select to_jsonb(m) - 'id' - 'created_at' as message,
                to_jsonb(d) - 'id' - 'message_id' - 'created_at' - 'updated_at' - 'next_attempt_at' as delivery,
                d.created_at = m.created_at and d.updated_at = m.created_at
                  and d.next_attempt_at = m.created_at as same_time
         from stock_sync.messages m join stock_sync.deliveries d on d.message_id = m.id
         where m.id = $1 order by d.id`,
        [id],
      );
    const mine = (await shape("evt_same-1")).rows;
    expect(mine).toHaveLength(2);
    expect(mine).toEqual((await shape("ref-same-1")).rows);
    expect(mine.every((r) => r.same_time)).toBe(true);
  });

  it("groups events that arrive together, stores each once, answers copies as duplicates, keeps arrival order", async () => {
    const i = intaker(t().db);
    const ids = Array.from({ length: 200 }, (_, n) => `grp-${String(n).padStart(3, "0")}`);
    // one order: its deliveries must keep the arrival order across batches
    const items = ids.map((id) => received(id, { orderId: "O-grp" }));
    const copies = ids.filter((_, n) => n % 10 === 3).map((id) => received(id, { orderId: "O-grp" }));
    const mixed = items.flatMap((it, n) => (n % 10 === 5 ? [it, copies[(n - 5) / 10]!] : [it]));
    const answers = await Promise.all(mixed.map((r) => i.intake(r)));

    expect(answers.filter((a) => !a.duplicate)).toHaveLength(200);
    expect(answers.filter((a) => a.duplicate)).toEqual(
      copies.map((c) => ({ duplicate: true, messageId: `evt_${c.event.id}`, subscriptions: [] })),
    );
    expect(i.stats().items).toBe(mixed.length);
    expect(i.stats().batches).toBeLessThan(mixed.length / 4);
    expect(Math.max(...i.sizes)).toBeGreaterThan(1);
    expect(i.warnings).toEqual([]); // no batch fell back to one by one

    expect(await countWhere(t().db, "inbox", "id", "grp-")).toBe(200);
    expect(await countWhere(t().db, "messages", "id", "evt_grp-")).toBe(200);
    const { rows } = await t().db.query<{ message_id: string }>(
      "select message_id from stock_sync.deliveries where subscription = 'created' and message_id like 'evt_grp-%' order by id",
    );
    expect(rows.map((r) => r.message_id)).toEqual(ids.map((id) => `evt_${id}`));
    expect(await countWhere(t().db, "deliveries", "message_id", "evt_grp-")).toBe(400);
  });

  it("stores an event once when copies race in two processes' batches", async () => {
    const [a, b] = [intaker(t().db), intaker(t().db)];
    const ids = Array.from({ length: 100 }, (_, n) => `race-${n}`);
    // in opposite orders, as two processes behind a load balancer might get them
    const answers = await Promise.all([
      ...ids.map((id) => a.intake(received(id))),
      ...[...ids].reverse().map((id) => b.intake(received(id))),
    ]);
    const fresh = answers.filter((x): x is Intake => !x.duplicate).map((x) => x.messageId);
    expect(fresh.sort()).toEqual(ids.map((id) => `evt_${id}`).sort());
    expect([...a.warnings, ...b.warnings]).toEqual([]); // e.g. no deadlock between the two
    expect(await countWhere(t().db, "inbox", "id", "race-")).toBe(100);
    expect(await countWhere(t().db, "deliveries", "message_id", "evt_race-")).toBe(200);
  });

  it("wakes the delivery engine's listeners after a batch that made deliveries, and only then", async () => {
    const payloads: string[] = [];
    const unlisten = await t().db.listen!(OUTBOX_CHANNEL, (p) => payloads.push(p));
    cleanup(() => unlisten());
    const createdOnly = intaker(
      t().db,
      subscriptions.filter((s) => s.name === "created"),
    );
    await createdOnly.intake(received("wake-0", { type: "shipped" })); // routed nowhere
    await createdOnly.intake(received("wake-1"));
    const all = intaker(t().db);
    expect(await all.intake(received("wake-1"))).toMatchObject({ duplicate: true });
    await all.intake(received("wake-2"));
    // notifications arrive in commit order: one from the unrouted event or the duplicate would show
    await waitUntil(async () => payloads.length >= 2, 5000, "two notifications");
    expect(payloads).toEqual(["created", "all-orders,created"]);
  });

  it("fails only the event that cannot be stored, not the others in its batch", async () => {
    await t().db.query(
      "alter table stock_sync.messages add constraint test_poison check (ordering_key <> 'poison')",
    );
    cleanup(() =>
      t()
        .db.query("alter table stock_sync.messages drop constraint test_poison")
        .then(() => {}),
    );
    const i = intaker(t().db);
    const lead = i.intake(received("poison-lead"));
    const rest = [
      i.intake(received("poison-ok-1")),
      i.intake(received("poison-bad", { orderId: "poison" })),
      i.intake(received("poison-ok-2")),
    ].map((p) =>
      p.then(
        (v) => v,
        (e: unknown) => e,
      ),
    );
    await lead;
    const [ok1, bad, ok2] = await Promise.all(rest);
    expect(i.sizes).toEqual([1, 3]);
    expect(i.warnings).toEqual(["inbound batch failed: writing its events one by one"]);
    expect(ok1).toMatchObject({ duplicate: false, messageId: "evt_poison-ok-1" });
    expect(ok2).toMatchObject({ duplicate: false, messageId: "evt_poison-ok-2" });
    expect(bad).toMatchObject({ code: "23514" });
    const { rows } = await t().db.query<{ id: string }>(
      "select id from stock_sync.inbox where id like 'poison-%' order by id",
    );
    expect(rows.map((r) => r.id)).toEqual(["poison-lead", "poison-ok-1", "poison-ok-2"]);
    expect(await countWhere(t().db, "messages", "id", "evt_poison-bad")).toBe(0);
  });

  it("over HTTP: 200 concurrent events plus copies in flight are answered 202 once each and 200 for copies", async () => {
    const s = await startServer(
      t().db,
      testConfig(`server:\n  inbound:\n    secrets: ["${SECRET}"]\n${SUBS}`),
    );
    cleanup(() => s.close());
    const request = (id: string) => {
      const body = JSON.stringify({ id, type: "created", data: { order_id: `O-${id}` } });
      const headers = signedHeaders(SECRET, body, { id: `msg_${id}` });
      return () => s.post(body, headers);
    };
    const ids = Array.from({ length: 200 }, (_, n) => `http-${n}`);
    const copies = ids.filter((_, n) => n % 10 === 0);
    const sends = [...ids, ...copies].map(request);
    const statuses = await Promise.all(sends.map(async (send) => (await send()).status));
    expect(statuses.filter((c) => c === 202)).toHaveLength(200);
    expect(statuses.filter((c) => c === 200)).toHaveLength(copies.length);
    expect(await countWhere(t().db, "inbox", "id", "http-")).toBe(200);
    expect(await countWhere(t().db, "messages", "id", "evt_http-")).toBe(200);
    expect(await countWhere(t().db, "deliveries", "message_id", "evt_http-")).toBe(400);
    const metrics = (await s.metrics.scrape()).body;
    const batches = Number(/^stock_sync_inbound_batch_size_count (\d+)$/m.exec(metrics)?.[1]);
    const events = Number(/^stock_sync_inbound_batch_size_sum (\d+)$/m.exec(metrics)?.[1]);
    expect(events).toBe(sends.length);
    // PGlite runs a statement synchronously on this event loop: no request arrives while a batch
    // is written, so there each batch is one request (the DB-level test above groups on both)
    if (t().backend === "postgres") expect(batches).toBeLessThan(sends.length);
    else expect(batches).toBe(sends.length);
  });
});

describe("inbound intake with the database unreachable", () => {
  it("fails every request of the batch as unavailable (503), without retrying them one by one", async () => {
    const db = openPostgres("postgres://stock-sync@127.0.0.1:1/none", { connectTimeoutMs: 1000 });
    cleanup(() => db.close());
    const i = intaker(db);
    const outcomes = await Promise.all(
      ["down-1", "down-2", "down-3", "down-4"].map((id) => i.intake(received(id)).catch((e: unknown) => e)),
    );
    for (const err of outcomes) {
      const { error } = describeError(err);
      expect([error.status, error.headers["retry-after"]]).toEqual([503, "5"]);
    }
    expect(i.sizes).toEqual([1, 3]);
    expect(i.warnings).toEqual([]);
  });
});
