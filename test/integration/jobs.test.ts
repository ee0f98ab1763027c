import { expect, it } from "vitest";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deliveryDetail, formatDetail } from "../../src/commands/delivery-detail.js";
import { loadJob } from "../../src/jobs/state.js";
import { setSubscriptionStatus } from "../../src/outbox/admin.js";
import { runCli } from "../helpers/cli.js";
import { maxInWindow, useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { quietLog, startEngine, type TestEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { createMetrics } from "../../src/metrics/metrics.js";
import { systemClock } from "../../src/clock.js";
import { commercetoolsFake, fluentFake } from "../helpers/job-fakes.js";

// Issue 15: a stock message is delivered only when the OMS's asynchronous import says done.
const { cleanup, receiver } = useCleanup();

const fluentJob = (base: string, more = "") => `
    url: "${base}/api/v4.1/job"
    retry_intervals: [0.05, 0.05, 0.05, 0.05]
    job:
      open: { url: "${base}/api/v4.1/job", body: '{"name": "stock " & message.snapshot_id, "retailerId": "1"}' }
      send: { url: "${base}/api/v4.1/job/{{open.id}}/batch" }
      poll:
        url: "${base}/api/v4.1/job/{{open.id}}/batch/{{send.id}}"
        done_when: 'response.status = "COMPLETE"'
        failed_when: 'response.status = "FAILED"'
        errors: 'response.results[status = "FAILED"].{"sku": skuRef, "location": locationRef, "reason": message}'
        interval: 10ms
${more}`;

type Entity = { sku: string; location: string; qty: number };
const batch = (rows: Entity[]) =>
  JSON.stringify({
    action: "UPSERT",
    entityType: "INVENTORY",
    entities: rows.map((r) => ({
      ref: `${r.sku}:${r.location}`,
      skuRef: r.sku,
      locationRef: r.location,
      qty: r.qty,
    })),
  });

describeEachDb("import jobs", (t) => {
  async function engine(yaml: string): Promise<TestEngine> {
    const e = await startEngine(t().db, testConfig(yaml));
    cleanup.push(() => e.stop());
    return e;
  }
  const stock = (e: TestEngine, part: string, rows: Entity[], snapshot = "snap-1") =>
    e.enqueue({
      subject: "stock.full",
      payload: batch(rows),
      sequenced: true,
      headers: { "stock-sync-kind": "full", "stock-sync-snapshot-id": snapshot, "stock-sync-part": part },
    });
  const deliveries = async (sub: string) =>
    (
      await t().db.query<{ id: string; status: string; message_id: string }>(
        "select id, status, message_id from stock_sync.deliveries where subscription = $1 order by id",
        [sub],
      )
    ).rows;
  const attempts = async (sub: string) =>
    (
      await t().db.query<{ outcome: string; error: string | null }>(
        `select a.outcome, a.error from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id
         where d.subscription = $1 order by a.id`,
        [sub],
      )
    ).rows;
  const allDelivered = (sub: string, n: number) =>
    waitUntil(
      async () => {
        const d = await deliveries(sub);
        return d.length === n && d.every((x) => x.status === "delivered");
      },
      15_000,
      `${sub}: ${n} delivered`,
    );

  it("Fluent: opens one job per run, delivers each part when its batch is COMPLETE, in order, and keeps the rejected records", async () => {
    const fake = fluentFake({ reject: (sku) => (sku === "BAD-1" ? "unknown product" : null) });
    const r = await receiver(fake.respond);
    const alerts = await receiver(() => ({ status: 204 }));
    const e = await engine(
      `subscriptions:\n  - name: fluent\n    subjects: [stock.full]${fluentJob(r.url)}notifications:\n  on_failure: ["${alerts.url}"]\n`,
    );
    await stock(e, "1/2", [
      { sku: "A", location: "S1", qty: 5 },
      { sku: "BAD-1", location: "S1", qty: 2 },
    ]);
    await stock(e, "2/2", [{ sku: "B", location: "S1", qty: 7 }]);
    await allDelivered("fluent", 2);
    // one job for the run; fifo: batch 2 only after batch 1's COMPLETE
    expect(fake.log.filter((l) => l.startsWith("open"))).toEqual(["open J1"]);
    const b1Done = fake.log.indexOf("poll B1 COMPLETE");
    const b2Sent = fake.log.findIndex((l) => l.startsWith("batch J1/B2"));
    expect(b1Done).toBeGreaterThan(0);
    expect(b2Sent).toBeGreaterThan(b1Done);
    expect(fake.log.filter((l) => l.startsWith("poll B1"))).toEqual([
      "poll B1 PENDING",
      "poll B1 RUNNING",
      "poll B1 COMPLETE",
    ]);
    expect(Object.fromEntries(fake.applied)).toEqual({ "A|S1": 5, "B|S1": 7 });
    const [first] = await deliveries("fluent");
    const job = await loadJob(t().db, Number(first!.id));
    expect(job).toMatchObject({
      phase: "done",
      rejected_count: 1,
      rejected: [{ sku: "BAD-1", location: "S1", reason: "unknown product" }],
      responses: { open: { id: "J1" }, send: { id: "B1" } },
    });
    // ops.import.rejected_rows, naming the record and the reason
    const [alert] = await alerts.waitFor(1);
    expect(JSON.parse(alert!.body.toString())).toMatchObject({
      type: "ops.import.rejected_rows",
      subscription: "fluent",
      detail: expect.stringMatching(/1 record\(s\) rejected .*BAD-1@S1: unknown product/),
    });
    // the metric: records rejected by the last finished job
    const metrics = createMetrics(
      { db: t().db, clock: systemClock, log: quietLog },
      { defaultMetrics: false },
    );
    const scraped = (await metrics.scrape()).body;
    expect(
      scraped,
      scraped
        .split("\n")
        .filter((l) => l.includes("import"))
        .join("\n"),
    ).toMatch(/stock_sync_import_rejected_records\{subscription="fluent"\} 1\n/);
    // what `stock-sync deliveries --id` shows
    const shown = formatDetail(await deliveryDetail(t().db, first!.message_id), process.stdout);
    expect(shown).toMatch(/import job: done, 3 poll\(s\)/);
    expect(shown).toMatch(/rejected records: 1\n/);
    expect(shown).toMatch(/BAD-1 +S1 +unknown product/);
    const url = t().url;
    if (url) {
      const dir = await mkdtemp(join(tmpdir(), "jobs-cli-"));
      await writeFile(join(dir, "c.yaml"), `database:\n  url: "${url}"\nsource:\n  url: "${url}"\n`);
      const run = await runCli(["--config", join(dir, "c.yaml"), "deliveries", "--id", first!.message_id]);
      expect(run.stderr).toBe("");
      expect(run.stdout).toMatch(/BAD-1 +S1 +unknown product/);
    }
  });

  it("failed_when: the attempt fails, is retried by sending the part again (same webhook-id), then delivered", async () => {
    const fake = fluentFake({ final: (n) => (n === 1 ? "FAILED" : "COMPLETE") });
    const r = await receiver(fake.respond);
    const e = await engine(
      `subscriptions:\n  - name: fluent-fails\n    subjects: [stock.full]${fluentJob(r.url)}`,
    );
    const id = await stock(e, "1/1", [{ sku: "A", location: "S1", qty: 5 }]);
    await allDelivered("fluent-fails", 1);
    const sends = fake.log.filter((l) => l.startsWith("batch"));
    expect(sends).toEqual([`batch J1/B1 ${id}`, `batch J1/B2 ${id}`]);
    const a = await attempts("fluent-fails");
    expect(a.map((x) => x.outcome)).toEqual(["retry", "delivered"]);
    expect(a[0]!.error).toMatch(/import job: the OMS's job failed/);
  });

  it("a job that never finishes fails after give_up_after, notifies on_failure, and is retried", async () => {
    const fake = fluentFake({ final: (n) => (n === 1 ? "NEVER" : "COMPLETE") });
    const r = await receiver(fake.respond);
    const alerts = await receiver(() => ({ status: 204 }));
    const e = await engine(
      `subscriptions:\n  - name: fluent-slow\n    subjects: [stock.full]\n    retries_until_failure: 1${fluentJob(
        r.url,
        "        give_up_after: 1s\n", // room for the retry's three polls on a loaded machine
      )}notifications:\n  on_failure: ["${alerts.url}"]\n`,
    );
    await stock(e, "1/1", [{ sku: "A", location: "S1", qty: 5 }]);
    await allDelivered("fluent-slow", 1);
    const a = await attempts("fluent-slow");
    expect(a.map((x) => x.outcome)).toEqual(["retry", "delivered"]);
    expect(a[0]!.error).toMatch(/gave up after/);
    const [alert] = await alerts.waitFor(1);
    expect(JSON.parse(alert!.body.toString())).toMatchObject({ subscription: "fluent-slow" });
    expect(fake.applied.get("A|S1")).toBe(5);
  });

  it("a poll answered with a non-2xx status is a failed attempt", async () => {
    const fake = fluentFake();
    let broken = true;
    const r = await receiver((req, i) => {
      if (req.method !== "GET" || !broken) return fake.respond(req, i);
      broken = false;
      return { status: 500, body: "oops" };
    });
    const e = await engine(
      `subscriptions:\n  - name: fluent-500\n    subjects: [stock.full]${fluentJob(r.url)}`,
    );
    await stock(e, "1/1", [{ sku: "A", location: "S1", qty: 5 }]);
    await allDelivered("fluent-500", 1);
    const a = await attempts("fluent-500");
    expect(a.map((x) => x.outcome)).toEqual(["retry", "delivered"]);
    expect(a[0]!.error).toBe("HTTP 500");
  });

  it("commercetools: polls the import operations until none is processing; rejected ones are stored", async () => {
    const fake = commercetoolsFake({ reject: (sku) => (sku === "X" ? "sku X does not exist" : null) });
    const r = await receiver(fake.respond);
    const e = await engine(`subscriptions:
  - name: ct
    subjects: [stock.full]
    url: "${r.url}/proj/inventories/import-containers/stock"
    retry_intervals: [0.05]
    job:
      poll:
        url: "${r.url}/proj/import-operations?ids={{$join(send.operationStatus.operationId, ',')}}"
        done_when: '$count(response.results[state = "processing"]) = 0'
        errors: 'response.results[state = "rejected"].{"sku": $substringBefore(resourceKey, "--"), "location": $substringAfter(resourceKey, "--"), "reason": errors[0].message}'
        interval: 10ms
`);
    const resources = [
      { key: "A--S1", sku: "A", quantityOnStock: 4, supplyChannel: { typeId: "channel", key: "S1" } },
      { key: "X--S1", sku: "X", quantityOnStock: 1, supplyChannel: { typeId: "channel", key: "S1" } },
    ];
    await e.enqueue({
      subject: "stock.full",
      payload: JSON.stringify({ type: "inventory", resources }),
      sequenced: true,
      headers: { "stock-sync-kind": "full", "stock-sync-snapshot-id": "s", "stock-sync-part": "1/1" },
    });
    await allDelivered("ct", 1);
    expect(fake.log).toEqual(["import 2", "poll processing,processing", "poll imported,rejected"]);
    expect(Object.fromEntries(fake.applied)).toEqual({ "A|S1": 4 });
    const [d] = await deliveries("ct");
    expect(await loadJob(t().db, Number(d!.id))).toMatchObject({
      rejected_count: 1,
      rejected: [{ sku: "X", location: "S1", reason: "sku X does not exist" }],
    });
  });

  it("an engine stopped while polling leaves the job to the next one, which polls it to the end without sending again", async () => {
    const fake = fluentFake({ final: () => "NEVER" });
    const r = await receiver(fake.respond);
    const yaml = `subscriptions:\n  - name: fluent-resume\n    subjects: [stock.full]${fluentJob(r.url)}`;
    const first = await engine(yaml);
    await stock(first, "1/1", [{ sku: "A", location: "S1", qty: 5 }]);
    await waitUntil(async () => fake.log.includes("poll B1 RUNNING"), 10_000, "polling");
    await first.stop();
    expect(await attempts("fluent-resume")).toEqual([]);
    const polled = fake.log.length;
    await engine(yaml);
    await waitUntil(async () => fake.log.length > polled + 2, 10_000, "polled again");
    // the second engine polls B1 (resumed), never opens nor sends again
    expect(fake.log.slice(polled).every((l) => l === "poll B1 RUNNING")).toBe(true);
    expect(fake.log.filter((l) => !l.startsWith("poll"))).toHaveLength(2);
  });
  it("fifo: the next part waits while a job runs; a superseded part's job stops and the next one goes", async () => {
    const fake = fluentFake({ final: (n) => (n === 1 ? "NEVER" : "COMPLETE") });
    const r = await receiver(fake.respond);
    const e = await engine(
      `subscriptions:\n  - name: fluent-super\n    subjects: [stock.full]${fluentJob(r.url)}`,
    );
    await stock(e, "1/1", [{ sku: "A", location: "S1", qty: 1 }], "old");
    await stock(e, "1/1", [{ sku: "A", location: "S1", qty: 2 }], "new");
    await waitUntil(
      async () => fake.log.filter((l) => l === "poll B1 RUNNING").length >= 3,
      10_000,
      "polling",
    );
    // while the first job runs, the second part is not sent (fifo)
    expect(fake.log.filter((l) => l.startsWith("batch"))).toHaveLength(1);
    const [first] = await deliveries("fluent-super");
    // what a newer full does to undelivered older stock (export/state.ts supersedeStock)
    await t().db.query("update stock_sync.deliveries set status = 'superseded' where id = $1", [first!.id]);
    await waitUntil(
      async () => (await deliveries("fluent-super"))[1]?.status === "delivered",
      10_000,
      "the newer part delivered",
    );
    expect((await deliveries("fluent-super")).map((d) => d.status)).toEqual(["superseded", "delivered"]);
    expect(fake.applied.get("A|S1")).toBe(2);
  });
  it("an outcome fenced after the OMS finished the job: the next owner polls the known job and records delivered, sending nothing again", async () => {
    const fake = fluentFake({ reject: (sku) => (sku === "BAD-1" ? "unknown product" : null) });
    const r = await receiver(fake.respond);
    const alerts = await receiver(() => ({ status: 204 }));
    const e = await engine(
      `subscriptions:\n  - name: fluent-fenced\n    subjects: [stock.full]${fluentJob(r.url)}notifications:\n  on_failure: ["${alerts.url}"]\n`,
    );
    const id = await stock(e, "1/1", [
      { sku: "A", location: "S1", qty: 4 },
      { sku: "BAD-1", location: "S1", qty: 1 },
    ]);
    await allDelivered("fluent-fenced", 1);
    await alerts.waitFor(1);
    const [d] = await deliveries("fluent-fenced");
    // What a lost lease leaves when the fence drops the outcome of a finished job: the job's end
    // is stored (phase done), the delivery is still owed and no attempt is recorded.
    await t().db.query("delete from stock_sync.attempts where delivery_id = $1", [d!.id]);
    await t().db.query(
      `update stock_sync.deliveries set status = 'pending', attempts = 0, delivered_at = null, next_attempt_at = now()
       where id = $1`,
      [d!.id],
    );
    const before = fake.log.length;
    e.engine.wake(["fluent-fenced"]);
    await allDelivered("fluent-fenced", 1);
    // the OMS is asked about the batch it already has; nothing is opened or sent again
    expect(fake.log.slice(before)).toEqual(["poll B1 COMPLETE"]);
    expect(fake.log.filter((l) => !l.startsWith("poll"))).toEqual(["open J1", `batch J1/B1 ${id}`]);
    expect((await attempts("fluent-fenced")).map((a) => a.outcome)).toEqual(["delivered"]);
    expect(await loadJob(t().db, Number(d!.id))).toMatchObject({ phase: "done", rejected_count: 1 });
    // the rejected records were reported once: the last alert is still the first one
    expect(alerts.requests).toHaveLength(1);
  });
  it("polls count against the subscription's rate_limit: no window holds more requests (open, send, polls) than it allows", async () => {
    const fake = fluentFake();
    const r = await receiver(fake.respond);
    // polls every 10 ms, a limit of 3 requests per 500 ms: without the limit, ~50 polls would arrive per window
    const e = await engine(
      `subscriptions:\n  - name: fluent-limited\n    subjects: [stock.full]\n    rate_limit: { requests: 3, per: 500ms }${fluentJob(r.url)}`,
    );
    await stock(e, "1/2", [{ sku: "A", location: "S1", qty: 1 }]);
    await stock(e, "2/2", [{ sku: "B", location: "S1", qty: 2 }]);
    await allDelivered("fluent-limited", 2);
    const got = await r.waitFor(8);
    expect(fake.log.filter((l) => l.startsWith("poll"))).toHaveLength(6);
    expect(
      maxInWindow(
        got.map((q) => q.at),
        500,
      ),
    ).toBeLessThanOrEqual(3);
  });
  it("a pause stops the job without a failed attempt; on resume the same job is polled to its end, not sent again", async () => {
    let finish = false;
    const fake = fluentFake({ final: () => (finish ? "COMPLETE" : "NEVER") });
    const r = await receiver(fake.respond);
    const e = await engine(
      `subscriptions:\n  - name: fluent-pause\n    subjects: [stock.full]${fluentJob(r.url)}`,
    );
    const id = await stock(e, "1/1", [{ sku: "A", location: "S1", qty: 4 }]);
    await waitUntil(async () => fake.log.includes("poll B1 RUNNING"), 10_000, "polling");
    await setSubscriptionStatus(t().db, "fluent-pause", "paused", new Date(), "test");
    e.engine.wake(["fluent-pause"]);
    const [d] = await deliveries("fluent-pause");
    // the attempt stops polling (and says so in the job row), recording no attempt
    await waitUntil(
      async () => (await loadJob(t().db, Number(d!.id)))?.stopped_at,
      10_000,
      "polling stopped",
    );
    const polls = fake.log.length;
    expect(await attempts("fluent-pause")).toEqual([]);
    finish = true;
    await setSubscriptionStatus(t().db, "fluent-pause", "enabled", new Date(), "test");
    e.engine.wake(["fluent-pause"]);
    await allDelivered("fluent-pause", 1);
    expect(fake.log.filter((l) => !l.startsWith("poll"))).toEqual(["open J1", `batch J1/B1 ${id}`]);
    expect((await attempts("fluent-pause")).map((a) => a.outcome)).toEqual(["delivered"]);
    expect(fake.log.slice(polls).every((l) => l.startsWith("poll B1"))).toBe(true);
  });
});
