import { expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { createExporter } from "../../src/export/exporter.js";
import type { RunResult } from "../../src/export/run.js";
import { describeRejected, stockStatus } from "../../src/export/status.js";
import { renderStatusPage } from "../../src/statuspage/page.js";
import { statusPageData } from "../../src/statuspage/data.js";
import { useCleanup, testDir } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { commercetoolsFake, fluentFake, type JobFake } from "../helpers/job-fakes.js";
import { seededRandom } from "../helpers/random.js";
import { exportDeps } from "../helpers/stock.js";

// Issue 15, end to end: the real exporter cuts a full and a delta into the OMS's batches, the
// engine follows each import job to its end against a fake that answers late and sometimes 500,
// and the stock at the fake equals the source except the records it rejected, which are
// reported exactly (jobs, /status, `stock-sync status`).
const { cleanup, receiver } = useCleanup();

const SOURCE = `stock:
  capture: { mode: full_diff }
  queries:
    sellable: "select sku, location, quantity from jobsrc.stock"
    sellable_keys: "select s.sku, s.location, s.quantity from jobsrc.stock s join unnest($2::text[], $3::text[]) k(sku, location) using (sku, location)"
    time_candidates: none
`;

async function createSource(db: Db, skus: number, locations: number): Promise<void> {
  await db.query(`drop schema if exists jobsrc cascade; create schema jobsrc;
    create table jobsrc.stock (sku text, location text, quantity int, primary key (sku, location));
    insert into jobsrc.stock select 'SKU-' || lpad(i::text, 5, '0'), 'STORE-' || j, (i * j) % 40
      from generate_series(1, ${skus}) i, generate_series(1, ${locations}) j;`);
}

const truth = async (db: Db) =>
  new Map(
    (
      await db.query<{ sku: string; location: string; quantity: number }>(
        "select sku, location, quantity from jobsrc.stock",
      )
    ).rows.map((r) => [`${r.sku}|${r.location}`, r.quantity]),
  );

/** Retries enough that a run of random 500s never ends a part dead. */
const RETRIES = `    retry_intervals: [${Array(30).fill("0.05").join(", ")}]\n    retries_until_failure: 30\n`;

describeEachDb("import jobs end to end", (t) => {
  const db = () => t().db;

  /** Full, then a delta, through the exporter and the engine; the fake's stock checked after each. */
  async function fullAndDelta(name: string, fake: JobFake, yaml: string, rejectedKeys: Set<string>) {
    const dir = await testDir("jobs-e2e-");
    const config = testConfig(`${SOURCE}subscriptions:\n${yaml}`);
    const deps = await exportDeps(db(), config, dir);
    const exporter = createExporter(deps);
    const engine = await startEngine(db(), config);
    cleanup.push(() => engine.stop());
    const settled = (what: string) =>
      waitUntil(
        async () =>
          (
            await db().query<{ n: number }>(
              "select count(*)::int as n from stock_sync.deliveries where subscription = $1 and status <> 'delivered'",
              [name],
            )
          ).rows[0]!.n === 0,
        120_000,
        `${name}: ${what} delivered`,
      );
    const expected = async () => new Map([...(await truth(db()))].filter(([k]) => !rejectedKeys.has(k)));

    const full = (await exporter.run("full", { trigger: "test", force: true })) as RunResult;
    await settled("the full");
    expect(new Map(fake.applied)).toEqual(await expected());
    const jobs = await db().query<{ n: number; rows: { sku: string; location: string }[] }>(
      "select rejected_count as n, rejected as rows from stock_sync.jobs where subscription = $1 and phase = 'done'",
      [name],
    );
    // reported exactly: the count, and each record by sku and location
    expect(jobs.rows.reduce((n, j) => n + j.n, 0)).toBe(rejectedKeys.size);
    expect(new Set(jobs.rows.flatMap((j) => j.rows.map((r) => `${r.sku}|${r.location}`)))).toEqual(
      rejectedKeys,
    );
    // per run on /status and in `stock-sync status`
    const status = await stockStatus(db());
    expect(status.last_full!.id).toBe(full.runId);
    expect(status.last_full!.delivery).toMatchObject([{ subscription: name, rejected: rejectedKeys.size }]);
    const [line] = describeRejected(status.last_full!.delivery);
    expect(line).toMatch(
      new RegExp(`^${name}: ${rejectedKeys.size} rejected by the OMS, first: SKU-\\d+@STORE-\\d: `),
    );
    const page = renderStatusPage(
      await statusPageData(db(), deps.subscriptions, { now: new Date(), adminEnabled: false }),
    );
    expect(page).toContain(`${rejectedKeys.size} rejected by the OMS`);

    // a delta: the changed rows reach the fake, the rejected ones still do not
    await db().query(
      "update jobsrc.stock set quantity = case when quantity > 30 then 0 else quantity + 3 end where sku like 'SKU-000_1'",
    );
    const delta = (await exporter.run("delta", { trigger: "test" })) as RunResult;
    expect(delta.rows).toBeGreaterThan(0);
    await settled("the delta");
    expect(new Map(fake.applied)).toEqual(await expected());
    const after = await stockStatus(db());
    expect(after.last_delta_sent!.delivery).toMatchObject([{ subscription: name, rejected: 0 }]);
    return { full, delta };
  }

  it("Fluent: a job per run, batches of 5,000 polled to COMPLETE, late answers and random 500s: the OMS's stock equals the source but the rejected records", async () => {
    await createSource(db(), 2400, 5);
    const random = seededRandom("jobs-e2e fluent");
    let calls = 0; // every 6th request fails for sure, others at random
    const bad = (sku: string) => Number(sku.slice(4)) % 131 === 0;
    const fake = fluentFake({
      reject: (sku) => (bad(sku) ? "unknown product" : null),
      weather: { fail: () => ++calls % 6 === 0 || random() < 0.1, delayMs: () => Math.floor(random() * 20) },
    });
    const r = await receiver(fake.respond);
    const rejectedKeys = new Set([...(await truth(db())).keys()].filter((k) => bad(k.split("|")[0]!)));
    expect(rejectedKeys.size).toBe(90);
    const { full } = await fullAndDelta(
      "fluent-e2e",
      fake,
      `  - name: fluent-e2e
    subjects: [stock.full, stock.delta]
    url: "${r.url}/api/v4.1/job"
    ordering: fifo
${RETRIES}    body:
      format: json
      rows_per_message: 5000
      template: |
        {"action": "UPSERT", "entityType": "INVENTORY",
         "entities": [rows.{"ref": sku & ":" & location, "skuRef": sku, "locationRef": location, "qty": quantity}]}
    job:
      open: { url: "${r.url}/api/v4.1/job", body: '{"name": "stock " & message.snapshot_id, "retailerId": "1"}' }
      send: { url: "${r.url}/api/v4.1/job/{{open.id}}/batch" }
      poll:
        url: "${r.url}/api/v4.1/job/{{open.id}}/batch/{{send.id}}"
        done_when: 'response.status = "COMPLETE"'
        failed_when: 'response.status = "FAILED"'
        errors: 'response.results[status = "FAILED"].{"sku": skuRef, "location": locationRef, "reason": message}'
        interval: 10ms
`,
      rejectedKeys,
    );
    expect(full.rows).toBe(12_000);
    // the bad day happened, and no batch was over the limit (the fake answers 400 then)
    expect(fake.log.some((l) => l.startsWith("500"))).toBe(true);
    expect(
      r.requests.filter((q) => q.method === "POST" && /\/batch$/.test(q.path)).length,
    ).toBeGreaterThanOrEqual(4);
    // one job opened per run that reached the OMS (a 500 on open is retried, not a second job)
    expect(fake.log.filter((l) => l.startsWith("open"))).toHaveLength(2);
  }, 240_000);

  it("commercetools: ≤ 20 resources per request, operations polled until imported or rejected, late answers and random 500s", async () => {
    await createSource(db(), 100, 3);
    const random = seededRandom("jobs-e2e commercetools");
    let calls = 0; // every 6th request fails for sure, others at random
    const bad = (sku: string) => Number(sku.slice(4)) % 19 === 0;
    const fake = commercetoolsFake({
      reject: (sku) => (bad(sku) ? `sku ${sku} does not exist` : null),
      weather: { fail: () => ++calls % 6 === 0 || random() < 0.1, delayMs: () => Math.floor(random() * 20) },
    });
    const r = await receiver(fake.respond);
    const rejectedKeys = new Set([...(await truth(db())).keys()].filter((k) => bad(k.split("|")[0]!)));
    await fullAndDelta(
      "ct-e2e",
      fake,
      `  - name: ct-e2e
    subjects: [stock.full, stock.delta]
    url: "${r.url}/proj/inventories/import-containers/stock"
    ordering: fifo
${RETRIES}    body:
      format: json
      rows_per_message: 20
      template: |
        {"type": "inventory", "resources": [rows.{"key": sku & "--" & location, "sku": sku,
          "quantityOnStock": quantity, "supplyChannel": {"typeId": "channel", "key": location}}]}
    job:
      poll:
        url: "${r.url}/proj/import-operations?ids={{$join(send.operationStatus.operationId, ',')}}"
        done_when: '$count(response.results[state = "processing"]) = 0'
        errors: 'response.results[state = "rejected"].{"sku": $substringBefore(resourceKey, "--"), "location": $substringAfter(resourceKey, "--"), "reason": errors[0].message}'
        interval: 10ms
`,
      rejectedKeys,
    );
    expect(fake.log.some((l) => l.startsWith("500"))).toBe(true);
    expect(fake.log.filter((l) => l.startsWith("import")).every((l) => Number(l.split(" ")[1]) <= 20)).toBe(
      true,
    );
  }, 240_000);
});
