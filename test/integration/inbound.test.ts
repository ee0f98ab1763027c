import { createHmac, randomUUID } from "node:crypto";
import { Webhook } from "standardwebhooks";
import { expect, it } from "vitest";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { countRows, startServer, type TestServer } from "../helpers/http.js";
import { startReceiver } from "../helpers/receiver.js";
import { newSecret, signedHeaders } from "../helpers/signing.js";

const { cleanup } = useCleanup();

const OMS_SECRET = newSecret();
const SUBSCRIBER_SECRET = newSecret();
const MINUTE = 60_000;

/** Headers as an independent Standard Webhooks implementation signs them (the OMS's secret unless given). */
const signed = (body: string, opts: { secret?: string; id?: string; at?: Date } = {}) =>
  signedHeaders(opts.secret ?? OMS_SECRET, body, opts);

const event = (fields: Record<string, unknown> = {}) =>
  JSON.stringify({ id: `evt-${randomUUID()}`, type: "created", data: { order_id: "O-1" }, ...fields });

describeEachDb("inbound webhooks", (t) => {
  async function server(yaml: string): Promise<TestServer> {
    const s = await startServer(t().db, testConfig(yaml));
    cleanup.push(() => s.close());
    return s;
  }
  const inbound = (more = "") =>
    `server:\n  inbound:\n    secrets: ["${OMS_SECRET}"]\n${more}` +
    `subscriptions:\n  - name: erp\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n` +
    `    secrets: ["${SUBSCRIBER_SECRET}"]\n    status: paused\n`;
  const stored = async () => ({
    inbox: await countRows(t().db, "inbox"),
    messages: await countRows(t().db, "messages"),
  });
  const inboxRow = async (id: string) =>
    (
      await t().db.query<{ subject: string; message_id: string; routed_to: number }>(
        "select subject, message_id, routed_to from stock_sync.inbox where id = $1",
        [id],
      )
    ).rows[0];

  it("accepts events signed by the standardwebhooks package and delivers them to subscribers", async () => {
    const r = await startReceiver();
    cleanup.push(() => r.close());
    const config = testConfig(
      `server:\n  inbound:\n    secrets: ["${newSecret()}", "${OMS_SECRET}"]\n` +
        `subscriptions:\n  - name: erp\n    subjects: ["order.*"]\n    url: "${r.url}"\n    ordering: key\n` +
        `    secrets: ["${SUBSCRIBER_SECRET}"]\n`,
    );
    const s = await startServer(t().db, config);
    cleanup.push(() => s.close());
    const e = await startEngine(t().db, config);
    cleanup.push(() => e.stop());

    const body = event({ id: "E-1001", data: { order_id: "O-77" } });
    const res = await s.post(body, signed(body));
    expect(res.status).toBe(202);
    expect(await res.json()).toEqual({ id: "E-1001" });

    const [got] = await r.waitFor(1);
    expect(got!.body.toString()).toBe(body);
    expect(got!.headers["webhook-id"]).toBe("evt_E-1001");
    expect(got!.headers["stock-sync-subject"]).toBe("order.created");
    // the subscriber can check our signature with the same independent library
    const { "webhook-id": id, "webhook-timestamp": ts, "webhook-signature": sig } = got!.headers;
    expect(() =>
      new Webhook(SUBSCRIBER_SECRET).verify(got!.body, {
        "webhook-id": id!,
        "webhook-timestamp": ts!,
        "webhook-signature": sig!,
      }),
    ).not.toThrow();
    expect(await inboxRow("E-1001")).toEqual({
      subject: "order.created",
      message_id: "evt_E-1001",
      routed_to: 1,
    });
    const { rows } = await t().db.query(
      "select ordering_key from stock_sync.messages where id = 'evt_E-1001'",
    );
    expect(rows).toEqual([{ ordering_key: "O-77" }]);
  });

  it("refuses a changed byte, a stale or future timestamp, missing headers and foreign secrets: 401, nothing stored", async () => {
    const s = await server(inbound());
    const body = event();
    const good = signed(body, { id: "msg_fixed" });
    const flip = (text: string, i: number) =>
      text.slice(0, i) + String.fromCharCode(text.charCodeAt(i) ^ 1) + text.slice(i + 1);
    const without = (name: string) => Object.fromEntries(Object.entries(good).filter(([k]) => k !== name));
    const cases: [string, string, Record<string, string>][] = [
      ["changed id", body, { ...good, "webhook-id": "msg_fixee" }],
      [
        "changed timestamp",
        body,
        { ...good, "webhook-timestamp": String(Number(good["webhook-timestamp"]) + 1) },
      ],
      ["changed body byte", flip(body, 10), good],
      ["changed last body byte", flip(body, body.length - 2), good],
      ["6 minutes old", body, signed(body, { at: new Date(Date.now() - 6 * MINUTE) })],
      ["6 minutes ahead", body, signed(body, { at: new Date(Date.now() + 6 * MINUTE) })],
      ["no webhook-id", body, without("webhook-id")],
      ["no webhook-timestamp", body, without("webhook-timestamp")],
      ["no webhook-signature", body, without("webhook-signature")],
      ["a subscription's secret", body, signed(body, { secret: SUBSCRIBER_SECRET })],
      ["a random secret", body, signed(body, { secret: newSecret() })],
      [
        "signature of another body",
        body,
        { ...good, "webhook-signature": signed("{}", { id: "msg_fixed" })["webhook-signature"]! },
      ],
    ];
    const before = await stored();
    for (const [what, b, headers] of cases) {
      const res = await s.post(b, headers);
      const json = (await res.json()) as { code: string; detail: string };
      expect([what, res.status]).toEqual([what, 401]);
      expect(json.code).toMatch(/^(signature_missing|signature_invalid|timestamp_out_of_tolerance)$/);
      expect(JSON.stringify(json)).not.toContain(good["webhook-signature"]!.slice(3, 20));
    }
    expect(await stored()).toEqual(before);
    // and the untouched request is accepted, so the cases above failed for the change alone
    expect((await s.post(body, good)).status).toBe(202);
  });

  it("refuses every event, signed or not, when no inbound secret is configured", async () => {
    const s = await server(
      `subscriptions:\n  - name: erp\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n`,
    );
    const before = await stored();
    const body = event();
    for (const headers of [signed(body), { "content-type": "application/json" }]) {
      const res = await s.post(body, headers);
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ code: "no_secrets_configured" });
    }
    expect(await stored()).toEqual(before);
  });

  it("OneStock scheme: any configured key may sign; other keys, stale times and no header are 401", async () => {
    const s = await server(
      `server:\n  inbound:\n    scheme: onestock\n    secrets: ["key-new", "key-old"]\n` +
        `subscriptions:\n  - name: erp\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n    status: paused\n`,
    );
    // computed here with node:crypto, independently of src/subscriptions/signing.ts
    const header = (body: string, keys: string[], t = Math.floor(Date.now() / 1000)) =>
      [
        `t=${t}`,
        ...keys.map((k, i) => `h${i}=${createHmac("sha256", k).update(`${t}.${body}`).digest("hex")}`),
      ].join(",");
    const post = (body: string, sig?: string) =>
      s.post(body, { "content-type": "application/json", ...(sig ? { "onestock-signature": sig } : {}) });

    const before = await stored();
    for (const [sig, body] of [
      [header(event(), ["key-x"]), event()],
      [header("{}", ["key-new"]), event()],
      [header(event(), ["key-new"], Math.floor(Date.now() / 1000) - 360), event()],
      [undefined, event()],
    ] as const) {
      const res = await post(body, sig);
      expect(res.status).toBe(401);
    }
    expect(await stored()).toEqual(before);

    const first = event({ topic: "order_state_changed", type: undefined });
    expect((await post(first, header(first, ["key-new"]))).status).toBe(202);
    const second = event();
    expect((await post(second, header(second, ["key-other", "key-old"]))).status).toBe(202);
    expect(await inboxRow(JSON.parse(first).id)).toMatchObject({ subject: "order.order_state_changed" });
  });

  it("answers a duplicate 200 and stores it once", async () => {
    const s = await server(inbound());
    const body = event({ id: "dup-1" });
    const first = await s.post(body, signed(body));
    expect(first.status).toBe(202);
    const before = await stored();
    const again = await s.post(body, signed(body)); // an OMS retry: new webhook-id and timestamp
    expect(again.status).toBe(200);
    expect(await again.json()).toEqual({ id: "dup-1", duplicate: true });
    expect(await stored()).toEqual(before);
  });

  it("stores and delivers once when identical requests race", async () => {
    const r = await startReceiver();
    cleanup.push(() => r.close());
    const config = testConfig(
      `server:\n  inbound:\n    secrets: ["${OMS_SECRET}"]\n` +
        `subscriptions:\n  - name: race\n    subjects: ["order.*"]\n    url: "${r.url}"\n`,
    );
    const s = await startServer(t().db, config);
    cleanup.push(() => s.close());
    const e = await startEngine(t().db, config);
    cleanup.push(() => e.stop());

    const body = event({ id: "race-1" });
    const headers = signed(body);
    const answers = await Promise.all(Array.from({ length: 12 }, () => s.post(body, headers)));
    expect(answers.map((a) => a.status).sort()).toEqual([...Array(11).fill(200), 202]);
    await r.waitFor(1);
    await waitUntil(async () => {
      const { rows } = await t().db.query<{ status: string }>(
        "select status from stock_sync.deliveries where message_id = 'evt_race-1'",
      );
      return rows.length === 1 && rows[0]!.status === "delivered";
    });
    const { rows } = await t().db.query("select id from stock_sync.inbox where id = 'race-1'");
    expect(rows).toHaveLength(1);
    expect(r.requests.filter((q) => q.headers["webhook-id"] === "evt_race-1")).toHaveLength(1);
  });

  it("stores an event no subscription wants and reports it in /api/status", async () => {
    const s = await server(
      `server:\n  inbound:\n    secrets: ["${OMS_SECRET}"]\n` +
        `subscriptions:\n  - name: only-created\n    subjects: ["order.created"]\n    url: "http://127.0.0.1:9/x"\n    status: paused\n`,
    );
    const inboundStatus = async () =>
      (
        (await (await fetch(`${s.url}/api/status`)).json()) as {
          inbound: { received: number; unrouted: number; last_unrouted_subjects: string[] };
        }
      ).inbound;
    const before = await inboundStatus();
    const body = event({ id: "lonely-1", type: "line.cancelled" });
    expect((await s.post(body, signed(body))).status).toBe(202);
    expect(await inboxRow("lonely-1")).toMatchObject({ subject: "order.line.cancelled", routed_to: 0 });
    // /api/status is cached for a second (issue 18.5): ask until the cache has moved on
    let after = await inboundStatus();
    for (let i = 0; i < 40 && after.received === before.received; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = await inboundStatus();
    }
    // this one event: received once, unrouted once
    expect(after.unrouted - before.unrouted).toBe(1);
    expect(after.received - before.received).toBe(1);
    expect(after.last_unrouted_subjects[0]).toBe("order.line.cancelled");
  });

  it("takes the order id from the configured field, else the event id; the id from webhook-id when the body has none", async () => {
    const s = await server(inbound(`    order_id_field: order.number\n`));
    const key = async (id: string) =>
      (
        await t().db.query<{ ordering_key: string }>(
          "select m.ordering_key from stock_sync.inbox i join stock_sync.messages m on m.id = i.message_id where i.id = $1",
          [id],
        )
      ).rows[0]?.ordering_key;
    const withOrder = event({ id: "k-1", order: { number: 4711 } });
    expect((await s.post(withOrder, signed(withOrder))).status).toBe(202);
    expect(await key("k-1")).toBe("4711");
    const withoutOrder = event({ id: "k-2" });
    expect((await s.post(withoutOrder, signed(withoutOrder))).status).toBe(202);
    expect(await key("k-2")).toBe("k-2");
    const noId = JSON.stringify({ type: "created" });
    const res = await s.post(noId, signed(noId, { id: "msg_from_header" }));
    expect(await res.json()).toEqual({ id: "msg_from_header" });
    expect(await key("msg_from_header")).toBe("msg_from_header");
    const odd = event({ id: "a.b/ü" });
    expect((await s.post(odd, signed(odd))).status).toBe(202);
    expect((await inboxRow("a.b/ü"))?.message_id).toMatch(/^evh_[A-Za-z0-9_-]{43}$/);
  });

  it("answers unknown routes and wrong content types with a code", async () => {
    const s = await server(inbound());
    const notFound = await fetch(`${s.url}/nope`);
    expect(notFound.status).toBe(404);
    expect(await notFound.json()).toMatchObject({ code: "not_found" });
    const body = event();
    const res = await s.post(body, { ...signed(body), "content-type": "text/plain" });
    expect(res.status).toBe(415);
    expect(await res.json()).toMatchObject({ code: "unsupported_media_type" });
  });
});
