import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadFormats } from "../../src/formats/registry.js";
import { sign } from "../../src/subscriptions/signing.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { type Receiver, startReceiver } from "../helpers/receiver.js";
import { testDir } from "../helpers/cleanup.js";

// Issue 14: an order event reshaped by body.template, signed over what is sent; without a
// template the event goes byte for byte.
const SECRET = "whsec_c3RvY2stc3luYy1ldmVudC10ZW1wbGF0ZS10ZXN0";

describeEachDb("order events with body.template", (t) => {
  let receiver: Receiver;
  beforeAll(async () => {
    receiver = await startReceiver();
  });
  afterAll(async () => {
    await receiver?.close();
  });

  it("reshaped (event fields plus id, subject, received_at), signed over the reshaped body; the plain one byte for byte", async () => {
    const config = testConfig(`subscriptions:
  - name: erp
    subjects: ["order.*"]
    url: "${receiver.url}/erp"
    secrets: ["${SECRET}"]
    body:
      format: json
      template: '{"orderId": data.order_id, "what": subject, "eventId": id, "at": received_at, "lines": $count(data.lines)}'
  - name: raw
    subjects: ["order.*"]
    url: "${receiver.url}/raw"
`);
    const engine = await startEngine(t().db, config);
    try {
      const event = '{"type":"created", "id":"e1",  "data":{"order_id":"O-42","lines":[1,2,3]}}';
      await engine.enqueue({ subject: "order.created", payload: event, id: "evt_e1" });
      const reqs = await receiver.waitFor(2);
      const erp = reqs.find((r) => r.path === "/erp")!;
      const raw = reqs.find((r) => r.path === "/raw")!;
      expect(raw.body.toString()).toBe(event);
      const body = JSON.parse(erp.body.toString());
      expect(body).toMatchObject({ orderId: "O-42", what: "order.created", eventId: "evt_e1", lines: 3 });
      expect(Number.isNaN(Date.parse(body.at))).toBe(false);
      expect(erp.headers["content-type"]).toBe("application/json");
      const ts = Number(erp.headers["webhook-timestamp"]);
      expect(erp.headers["webhook-signature"]).toBe(sign([SECRET], "evt_e1", ts, erp.body));
    } finally {
      await engine.stop();
    }
  });

  it("a template that fails on an event's data: a failed attempt classed `template`, naming the subscription and the field; the event is kept and the next one goes", async () => {
    const config = testConfig(`subscriptions:
  - name: erp-strict
    subjects: ["order.*"]
    url: "${receiver.url}/strict"
    retry_intervals: [0.05, 0.05]
    retries_until_failure: 1
    body:
      format: json
      template: '{"orderId": data.order_id, "total": $number(data.total)}'
`);
    const engine = await startEngine(t().db, config);
    try {
      const bad = await engine.enqueue({
        subject: "order.created",
        payload: '{"data":{"order_id":"O-1","total":"twelve"}}',
        id: "evt_bad",
      });
      await engine.enqueue({
        subject: "order.created",
        payload: '{"data":{"order_id":"O-2","total":"12.5"}}',
      });
      const strict = await waitUntil(
        async () => receiver.requests.find((r) => r.path === "/strict"),
        20_000,
        "the good event",
      );
      expect(JSON.parse(strict.body.toString())).toEqual({ orderId: "O-2", total: 12.5 });
      const attempts = async () =>
        (
          await t().db.query<{ error_class: string; error: string; status: string }>(
            `select a.error_class, a.error, d.status from stock_sync.attempts a
             join stock_sync.deliveries d on d.id = a.delivery_id where d.message_id = $1 order by a.id`,
            [bad],
          )
        ).rows;
      const all = await waitUntil(
        async () => {
          const a = await attempts();
          return a.length >= 3 && a;
        },
        20_000,
        "three failed attempts",
      );
      expect(all[0]).toMatchObject({ error_class: "template" });
      expect(all[0]!.error).toMatch(
        /^template: subscription erp-strict: body\.template failed on this event at character \d+ \(number\): Unable to cast value to a number: "twelve"$/,
      );
      // kept: dead after its retries, its stored event untouched, replayable once the template is fixed
      expect(all.at(-1)!.status).toBe("dead");
      const kept = await t().db.query<{ payload: Uint8Array }>(
        "select payload from stock_sync.messages where id = $1",
        [bad],
      );
      expect(Buffer.from(kept.rows[0]!.payload).toString()).toBe(
        '{"data":{"order_id":"O-1","total":"twelve"}}',
      );
    } finally {
      await engine.stop();
    }
  });
});

it("SIGHUP's reload re-reads map files; a broken file keeps the maps in use", async () => {
  const dir = await testDir("stock-sync-reload-");
  const file = join(dir, "loc.csv");
  await writeFile(file, "L1,A\n");
  const config = testConfig(
    `subscriptions:\n  - name: s\n    subjects: [stock.full]\n    url: "file:///tmp/x"\n    map: { location: { file: "${file}" } }\n`,
  );
  const formats = await loadFormats(buildSubscriptions(config), { partRows: 10 });
  expect(formats.stock("s")!.maps.location!.codes.get("L1")).toBe("A");
  await writeFile(file, "L1,B\n");
  await formats.reload();
  expect(formats.stock("s")!.maps.location!.codes.get("L1")).toBe("B");
  await writeFile(file, "L1,B\nL1,C\n");
  await expect(formats.reload()).rejects.toThrow("subscriptions[0].map.location.file");
  expect(formats.stock("s")!.maps.location!.codes.get("L1")).toBe("B");
});
