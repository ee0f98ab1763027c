import { Writable } from "node:stream";
import { gzipSync } from "node:zlib";
import { expect, it } from "vitest";
import { systemClock } from "../../src/clock.js";
import { createLogger } from "../../src/log.js";
import type { AttemptRecord } from "../../src/outbox/outcome.js";
import { syncSubscriptions } from "../../src/outbox/queries.js";
import { recordBatch } from "../../src/outbox/record.js";
import { purgeDelivered } from "../../src/outbox/retention.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { insertBacklog } from "../helpers/backlog.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";

const { cleanup, receiver } = useCleanup();

type AttemptRow = {
  message_id: string;
  outcome: string;
  status: number | null;
  error: string | null;
  response_body: string | null;
};

describeEachDb("recording outcomes under faults", (t) => {
  const attempts = async (subscription: string) =>
    (
      await t().db.query<AttemptRow>(
        `select d.message_id, a.outcome, a.status, a.error, a.response_body from stock_sync.attempts a
         join stock_sync.deliveries d on d.id = a.delivery_id where d.subscription = $1 order by a.id`,
        [subscription],
      )
    ).rows;

  it("any reply body (NUL, gzip, invalid UTF-8, binary) is stored safely; fifo goes on to the next message", async () => {
    const bodies: (string | Buffer)[] = [
      "bad\u0000request",
      gzipSync(Buffer.from(JSON.stringify({ error: "x".repeat(200) }))),
      Buffer.concat([Buffer.from("upstream said: "), Buffer.from([0xff, 0xc3, 0x28]), Buffer.from(" ok?")]),
      Buffer.from(Array.from({ length: 64 }, (_, i) => i)),
    ];
    const r = await receiver((_req, i) =>
      i < bodies.length ? { status: 500, body: bodies[i] } : { status: 200, body: "ok\u0000" },
    );
    const e = await startEngine(
      t().db,
      testConfig(
        `subscriptions:\n  - name: bodies\n    subjects: ["order.*"]\n    url: "${r.url}"\n    ordering: fifo\n` +
          "    retry_intervals: [0.05, 0.05, 0.05, 0.05, 0.05]\n",
      ),
    );
    cleanup.push(() => e.stop());
    const first = await e.enqueue({ subject: "order.created", payload: '{"n":1}' });
    const second = await e.enqueue({ subject: "order.created", payload: '{"n":2}' });
    const rows = await waitUntil(
      async () => {
        const list = await attempts("bodies");
        return list.filter((a) => a.outcome === "delivered").length === 2 ? list : undefined;
      },
      10_000,
      "both messages delivered",
    );
    expect(rows.map((a) => [a.message_id, a.outcome])).toEqual([
      [first, "retry"],
      [first, "retry"],
      [first, "retry"],
      [first, "retry"],
      [first, "delivered"],
      [second, "delivered"],
    ]);
    // each sent once per attempt: no resend loop
    expect(r.requests).toHaveLength(6);
    const stored = rows.map((a) => a.response_body);
    expect(stored[0]).toBe("bad\ufffdrequest");
    expect(stored[1]).toMatch(/^\[binary reply of \d+ characters, not stored\]$/);
    expect(stored[2]).toBe("upstream said: \ufffd\ufffd( ok?");
    expect(stored[3]).toMatch(/^\[binary reply/);
    // a success's reply is not kept (it helps nobody)
    expect(stored.slice(4)).toEqual([null, null]);
  });

  it("stores a failure's reply redacted and capped", async () => {
    const echo = [
      "Authorization: Bearer sk_live_abcdef123456",
      "webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pW4=",
      '{"client_secret":"s3cr3t-value","api_key":"AKIA1234567890"}',
      "x".repeat(5000),
    ].join("\n");
    const r = await receiver(() => ({ status: 401, body: echo }));
    const e = await startEngine(
      t().db,
      testConfig(
        `subscriptions:\n  - name: echo\n    subjects: ["order.*"]\n    url: "${r.url}"\n    retry_intervals: [60]\n`,
      ),
    );
    cleanup.push(() => e.stop());
    await e.enqueue({ subject: "order.created", payload: "{}" });
    const [a] = await waitUntil(async () => {
      const list = await attempts("echo");
      return list.length ? list : undefined;
    });
    const body = a!.response_body!;
    expect(body).toContain("Authorization: [redacted]");
    expect(body).toContain("webhook-signature: [redacted]");
    expect(body).not.toMatch(/sk_live|K5oZfzN95Z9|s3cr3t|AKIA1234/);
    expect(body.length).toBe(1024);
  });

  it("an outcome the database refuses becomes a visible attempt error on the retry schedule, not a resend loop", async () => {
    const db = t().db;
    // the fault: this database refuses any attempt row whose stored reply mentions "poison"
    await db.query(`create or replace function stock_sync.test_poison() returns trigger language plpgsql as $$
      begin
        if new.response_body like '%poison%' then raise exception 'poisoned reply refused'; end if;
        return new;
      end $$`);
    await db.query(`create trigger test_poison before insert on stock_sync.attempts
      for each row execute function stock_sync.test_poison()`);
    cleanup.push(() => db.query("drop trigger test_poison on stock_sync.attempts"));
    const r = await receiver((req) =>
      req.body.toString().includes('"n":2') ? { status: 500, body: "poison" } : { status: 204 },
    );
    const e = await startEngine(
      db,
      testConfig(
        `subscriptions:\n  - name: poisoned\n    subjects: ["order.*"]\n    url: "${r.url}"\n` +
          "    concurrency: 3\n    retry_intervals: [30]\n",
      ),
    );
    cleanup.push(() => e.stop());
    for (const n of [1, 2, 3]) await e.enqueue({ subject: "order.created", payload: `{"n":${n}}` });
    const rows = await waitUntil(
      async () => {
        const list = await attempts("poisoned");
        return list.length === 3 ? list : undefined;
      },
      10_000,
      "three attempts recorded",
    );
    const poisoned = rows.find((a) => a.outcome !== "delivered")!;
    expect(rows.filter((a) => a.outcome === "delivered")).toHaveLength(2);
    expect(poisoned).toMatchObject({ outcome: "retry", response_body: null });
    expect(poisoned.error).toMatch(/the outcome \(HTTP 500\) could not be recorded: poisoned reply refused/);
    const { rows: d } = await db.query<{ status: string; wait: number }>(
      `select d.status, extract(epoch from d.next_attempt_at - d.updated_at)::float8 as wait
       from stock_sync.deliveries d where d.message_id = $1`,
      [poisoned.message_id],
    );
    expect(d[0]!.status).toBe("failed");
    expect(d[0]!.wait).toBeGreaterThanOrEqual(24);
    const { rows: s } = await db.query<{ last_error: string }>(
      "select last_error from stock_sync.subscriptions where name = 'poisoned'",
    );
    expect(s[0]!.last_error).toMatch(/could not be recorded/);
    expect(r.requests.filter((q) => q.body.toString().includes('"n":2'))).toHaveLength(1);
  });

  it("a batch that cannot be recorded is recorded one by one: the others keep their outcomes", async () => {
    const db = t().db;
    await db.query(`create or replace function stock_sync.test_poison() returns trigger language plpgsql as $$
      begin
        if new.response_body like '%poison%' then raise exception 'poisoned reply refused'; end if;
        return new;
      end $$`);
    await db.query(`create trigger test_poison before insert on stock_sync.attempts
      for each row execute function stock_sync.test_poison()`);
    cleanup.push(() => db.query("drop trigger test_poison on stock_sync.attempts"));
    const [sub] = buildSubscriptions(
      testConfig(
        `subscriptions:\n  - name: batch\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n    retry_intervals: [30]\n`,
      ),
    );
    await syncSubscriptions(db, [{ name: "batch", status: "enabled" }]);
    await insertBacklog(db, { tag: "batch", n: 3, subscriptions: ["batch"] });
    const { rows: ids } = await db.query<{ id: number }>(
      "select id from stock_sync.deliveries where subscription = 'batch' order by id",
    );
    const at = new Date();
    const rec = (id: number, status: number, body: string): AttemptRecord => ({
      deliveryId: id,
      startedAt: at,
      durationMs: 5,
      result: { kind: "response", status },
      responseBody: body,
      decision: status < 300 ? { kind: "delivered" } : { kind: "retry", delayMs: 30_000 },
      decidedAt: at,
    });
    const lines: string[] = [];
    const log = createLogger({
      level: "warn",
      format: "json",
      destination: new Writable({
        write(chunk, _enc, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    });
    const recorded = await recordBatch(
      { db, clock: systemClock, log, random: () => 0.5, all: [sub!], notifyMinIntervalMs: 0 },
      sub!,
      [rec(ids[0]!.id, 503, "busy"), rec(ids[1]!.id, 500, "poison"), rec(ids[2]!.id, 204, "")],
    );
    expect(recorded.map((x) => x.outcome)).toEqual(["retry", "retry", "delivered"]);
    const { rows } = await db.query<{ delivery_id: number; error: string; response_body: string | null }>(
      "select delivery_id, error, response_body from stock_sync.attempts where delivery_id = any($1::int8[]) order by delivery_id",
      [ids.map((r) => r.id)],
    );
    expect(rows.map((r) => [r.error, r.response_body])).toEqual([
      ["HTTP 503", "busy"],
      [expect.stringMatching(/could not be recorded: poisoned reply refused/), null],
      [null, null],
    ]);
    expect(lines.join("")).toMatch(/attempt outcome could not be recorded/);
  });

  it("an attempt goes with its delivery: retention, a deleted message, a truncate (no foreign key since 0013)", async () => {
    const db = t().db;
    const [sub] = buildSubscriptions(
      testConfig(
        `subscriptions:\n  - name: gone\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n`,
      ),
    );
    await syncSubscriptions(db, [{ name: "gone", status: "enabled" }]);
    await insertBacklog(db, { tag: "gone", n: 4, subscriptions: ["gone"] });
    const { rows: ids } = await db.query<{ id: number; message_id: string }>(
      "select id, message_id from stock_sync.deliveries where subscription = 'gone' order by id",
    );
    const at = new Date();
    const delivered = (id: number, status: number): AttemptRecord => ({
      deliveryId: id,
      startedAt: at,
      durationMs: 5,
      result: { kind: "response", status },
      responseBody: null,
      decision: status < 300 ? { kind: "delivered" } : { kind: "retry", delayMs: 30_000 },
      decidedAt: at,
    });
    const deps = { db, clock: systemClock, log: createLogger({ level: "silent", format: "json" }) };
    // two delivered (one statement), one failed (the general path), one never attempted
    await recordBatch({ ...deps, random: () => 0.5, all: [sub!], notifyMinIntervalMs: 0 }, sub!, [
      delivered(ids[0]!.id, 204),
      delivered(ids[1]!.id, 204),
    ]);
    await recordBatch({ ...deps, random: () => 0.5, all: [sub!], notifyMinIntervalMs: 0 }, sub!, [
      delivered(ids[2]!.id, 500),
    ]);
    const left = async () =>
      (
        await db.query<{ delivery_id: number }>(
          "select delivery_id from stock_sync.attempts where delivery_id = any($1::int8[]) order by delivery_id",
          [ids.map((r) => r.id)],
        )
      ).rows.map((r) => Number(r.delivery_id));
    expect(await left()).toEqual([ids[0]!.id, ids[1]!.id, ids[2]!.id]);
    // retention deletes the delivered ones, and their attempts with them
    await purgeDelivered(db, new Date(Date.now() + 60_000), 1);
    expect(await left()).toEqual([ids[2]!.id]);
    // a message deleted takes its deliveries, and they their attempts
    await db.query("delete from stock_sync.messages where id = $1", [ids[2]!.message_id]);
    expect(await left()).toEqual([]);
    // and a truncate of the outbox leaves no attempt behind
    await recordBatch({ ...deps, random: () => 0.5, all: [sub!], notifyMinIntervalMs: 0 }, sub!, [
      delivered(ids[3]!.id, 500),
    ]);
    expect(await left()).toEqual([ids[3]!.id]);
    await db.query("truncate stock_sync.deliveries cascade");
    expect((await db.query("select 1 from stock_sync.attempts")).rows).toEqual([]);
  });
});
