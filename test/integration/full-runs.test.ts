import { readdirSync, rmSync, statSync } from "node:fs";
import { readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describe, expect, inject, it, onTestFinished } from "vitest";
import type { Db } from "../../src/db/db.js";
import { openPostgres } from "../../src/db/pg.js";
import type { ExportDeps } from "../../src/export/run.js";
import { runFull } from "../../src/export/snapshot.js";
import { pruneChanges } from "../../src/inventory/capture-consumers.js";
import { DEFAULT_SELLABLE } from "../../src/inventory/queries.js";
import { seedDemoSource } from "../../src/inventory/seed.js";
import { FIXTURES_DIR } from "../../src/app.js";
import { capturedLog } from "../helpers/captured-log.js";
import { testDir } from "../helpers/cleanup.js";
import { createTestDb, describeEachDb } from "../helpers/db.js";
import { spyDb } from "../helpers/spy-db.js";
import {
  applyToOms,
  STOCK_SUB,
  sourceTruth,
  stockFixture,
  stockMessages,
  withoutZeros,
} from "../helpers/stock.js";

/**
 * What a full run does that its result, the state database, the OMS's messages, the source's
 * capture table and the operator's log show (docs/testing.md, mutation testing of snapshot.ts):
 * the run's record and phases, the sent state loaded while reading or after it (gzip parts), the
 * two shrink refusals, the temp folder, dry runs and --out changing nothing anywhere, and the
 * change-capture consumer held before the read and advanced after the commit.
 */

// ops.* notices go to a subscription of their own, so a refusal's notice can be read
const OPS_SUB = `  - name: ops\n    subjects: ["ops.*"]\n    url: "file:///dev/null/unused"\n`;
// a subscription with its own body, whose template prints the run's fields
const TEMPLATED = `  - name: rendered\n    subjects: [stock.full, stock.delta]\n    url: "file:///dev/null/r"\n    body: { format: json, template: '{"k": kind, "id": snapshot_id, "at": taken_at, "n": $count(rows)}' }\n`;

const SNAPSHOT_ID = /^full-\d{8}T\d{6}-[0-9a-f]{6}$/;

/** The sent state, key -> quantity. */
async function sentState(db: Db): Promise<Map<string, number>> {
  const { rows } = await db.query<{ sku: string; location: string; quantity: number }>(
    "select sku, location, quantity from stock_sync.stock_sent",
  );
  return new Map(rows.map((r) => [`${r.sku}|${r.location}`, Number(r.quantity)]));
}

/** The refused full's run row says what its result said: refused, same snapshot, rows and reason. */
async function expectRecordedAsRefused(
  db: Db,
  refused: { runId: number | null; snapshotId?: string; rows: number; detail?: string | null },
) {
  expect(await runRow(db, refused.runId)).toMatchObject({
    kind: "full",
    status: "refused",
    snapshot_id: refused.snapshotId,
    rows: refused.rows,
    detail: refused.detail,
  });
}

const runRow = async (db: Db, id: number | null) =>
  (
    await db.query<{
      kind: string;
      status: string;
      snapshot_id: string;
      rows: number | null;
      parts: number | null;
      source_snapshot: string | null;
      detail: string | null;
    }>(
      "select kind, status, snapshot_id, rows, parts, source_snapshot, detail from stock_sync.stock_runs where id = $1",
      [id],
    )
  ).rows[0];

const count = async (db: Db, sql: string) =>
  Number((await db.query<{ n: string }>(`select count(*) as n from (${sql}) x`)).rows[0]!.n);

const consumers = async (db: Db) =>
  (await db.query<{ name: string }>("select name from stock_sync_capture.consumers order by name")).rows.map(
    (r) => r.name,
  );

/** A sink for --out that keeps what was written. */
function sink() {
  const chunks: Buffer[] = [];
  const out = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(Buffer.from(chunk));
      cb();
    },
  });
  return { out, text: () => Buffer.concat(chunks).toString("utf8") };
}

describeEachDb("full runs: result and a failing publish", (t) => {
  const db = () => t().db;

  it("a fence that fails in the publishing transaction fails the run (not a refusal); a run's duration is a duration", async () => {
    const fx = await stockFixture(db());
    const lost = async () => {
      throw new Error("the stock lock was lost");
    };
    await expect(runFull(fx.deps, { trigger: "test", fence: lost })).rejects.toThrow(
      "the stock lock was lost",
    );
    const { rows } = await db().query<{ kind: string; status: string; detail: string }>(
      "select kind, status, detail from stock_sync.stock_runs order by id desc limit 1",
    );
    expect(rows).toEqual([
      { kind: "full", status: "failed", detail: expect.stringContaining("the stock lock was lost") },
    ]);

    const run = await runFull(fx.deps, { trigger: "test" });
    expect(run).toMatchObject({ kind: "full", status: "enqueued" });
    expect(run.durationMs).toBeGreaterThanOrEqual(0);
    expect(run.durationMs).toBeLessThan(3_600_000); // a duration, not a sum of two times
  });
});

describeEachDb("a full's record, phases and sent state", (t) => {
  const db = () => t().db;

  it("the run, its messages and the sent state carry one snapshot id; the phases name where the time went", async () => {
    const fx = await stockFixture(db(), `${STOCK_SUB}${TEMPLATED}`);
    const run = await fx.exporter.run("full", { trigger: "test" });
    if (run.status === "skipped") throw new Error("skipped");
    expect(run).toMatchObject({ kind: "full", status: "enqueued", runId: expect.any(Number) });
    expect(run.snapshotId).toMatch(SNAPSHOT_ID);
    expect(run.detail).toBeUndefined();
    // the run's record, as `status` and the next runs read it
    expect(await runRow(db(), run.runId)).toEqual({
      kind: "full",
      status: "enqueued",
      snapshot_id: run.snapshotId,
      rows: run.rows,
      parts: run.parts,
      source_snapshot: expect.stringMatching(/^\d+:\d+:/),
      detail: null,
    });
    // the OMS's messages: every part says which full it belongs to
    const { rows: headers } = await db().query<{ headers: Record<string, string> }>(
      `select m.headers from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
       where d.subscription = 'oms' order by d.sequence`,
    );
    expect(headers).toHaveLength(run.parts);
    for (const h of headers.map((r) => r.headers)) {
      expect(h["stock-sync-kind"]).toBe("full");
      expect(h["stock-sync-snapshot-id"]).toBe(run.snapshotId);
    }
    // the rendered body carries the run's fields
    const { rows: bodies } = await db().query<{ payload: Uint8Array; headers: Record<string, string> }>(
      `select m.payload, m.headers from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
       where d.subscription = 'rendered' order by d.sequence`,
    );
    expect(bodies).toHaveLength(1);
    expect(bodies[0]!.headers["stock-sync-kind"]).toBe("full");
    const body = JSON.parse(Buffer.from(bodies[0]!.payload).toString("utf8"));
    expect(body).toEqual({ k: "full", id: run.snapshotId, at: expect.any(String), n: run.rows });
    expect(Number.isNaN(Date.parse(body.at))).toBe(false);
    // what the next delta compares with: every key the full said
    expect(await sentState(db())).toEqual(await sourceTruth(db(), DEFAULT_SELLABLE));
    // the phases (logged with the result; bench/full.ts reads them): on PostgreSQL the sent state
    // is loaded while the source is read, so no copy after it; PGlite copies the parts after it
    const loadedWhileReading = t().backend === "postgres";
    expect(Object.keys(run.phases ?? {})).toEqual([
      "read",
      "render",
      "enqueue",
      ...(loadedWhileReading ? [] : ["sentCopy"]),
      "sentDiff",
      "sentApply",
      "commit",
    ]);
  });

  it("rows a subscription's location map skips are counted in the full's result and in its record", async () => {
    await seedDemoSource(db(), { fixturesDir: FIXTURES_DIR });
    const { rows: locs } = await db().query<{ location: string }>(
      "select distinct location from inventory.stock_on_hand order by location",
    );
    const file = join(await testDir("stock-sync-map-"), "locations.csv");
    await writeFile(
      file,
      `ours,theirs\n${locs
        .slice(1)
        .map((l) => `${l.location},OMS-${l.location}`)
        .join("\n")}\n`,
    );
    const mapped = `  - name: mapped\n    subjects: [stock.full]\n    url: "file:///dev/null/m"\n    body: { format: ndjson }\n    map: { location: { file: "${file}", missing: skip } }\n`;
    const fx = await stockFixture(db(), STOCK_SUB + mapped);
    const run = await fx.exporter.run("full", { trigger: "test" });
    if (run.status === "skipped") throw new Error("skipped");
    // the first location has no mapping: its rows are skipped for that subscription
    const unmapped = [...(await sourceTruth(db(), DEFAULT_SELLABLE)).keys()].filter((k) =>
      k.endsWith(`|${locs[0]!.location}`),
    ).length;
    expect(unmapped).toBeGreaterThan(0);
    expect(run.detail).toBe(`mapped: ${unmapped} rows skipped (no mapping)`);
    expect((await runRow(db(), run.runId))?.detail).toBe(run.detail);
  });

  it("gzip parts, the sent state copied from them after the read (a state pool with no room to spare); plain parts too", async () => {
    const fx = await stockFixture(db(), `${STOCK_SUB}stock:\n  format: { gzip: true }\n`);
    const deps: ExportDeps = { ...fx.deps, statePoolSize: 0 };
    await db().query("update inventory.stock_on_hand set quantity = quantity + 3");
    const run = await runFull(deps, { trigger: "test" });
    expect(run.status).toBe("enqueued");
    // copied from the parts after the read, then compared
    expect(Object.keys(run.phases ?? {})).toEqual([
      "read",
      "render",
      "enqueue",
      "sentCopy",
      "sentDiff",
      "sentApply",
      "commit",
    ]);
    const { rows } = await db().query<{ headers: Record<string, string> }>(
      "select m.headers from stock_sync.messages m where m.run_id = $1",
      [run.runId],
    );
    expect(rows.map((r) => r.headers["content-encoding"])).toEqual(rows.map(() => "gzip"));
    expect(await sentState(db())).toEqual(await sourceTruth(db(), DEFAULT_SELLABLE));

    const plain = { ...deps, stock: { ...deps.stock, format: { ...deps.stock.format, gzip: false } } };
    await db().query("update inventory.stock_on_hand set quantity = quantity + 2");
    expect((await runFull(plain, { trigger: "test" })).status).toBe("enqueued");
    expect(await sentState(db())).toEqual(await sourceTruth(db(), DEFAULT_SELLABLE));
  });

  it("a gzip part lost before the sent state is copied from it fails the run with the file's error, never hangs it", async () => {
    // no subscription takes the CSV parts, so the sent state's copy is the first to read them
    const fx = await stockFixture(
      db(),
      `${OPS_SUB.replace("  - ", "subscriptions:\n  - ")}stock:\n  format: { gzip: true }\n`,
    );
    const deps: ExportDeps = { ...fx.deps, statePoolSize: 0 };
    // when it does hang (the file's error not passed on), the test times out; ending its COPY's
    // connection lets the database close after it
    onTestFinished(async (ctx) => {
      if (ctx.task.result?.state === "fail" && t().backend === "postgres")
        await db().query(
          "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
        );
    });
    const lost = runFull(deps, {
      trigger: "test",
      // a tmp cleaner at work once the parts are written
      onProgress: () => {
        for (const name of readdirSync(deps.tmpDir))
          for (const part of readdirSync(join(deps.tmpDir, name))) rmSync(join(deps.tmpDir, name, part));
      },
    });
    await expect(lost).rejects.toThrow(/ENOENT/);
    const { rows } = await db().query<{ status: string; detail: string }>(
      "select status, detail from stock_sync.stock_runs order by id desc limit 1",
    );
    expect(rows).toEqual([{ status: "failed", detail: expect.stringContaining("ENOENT") }]);
  });
});

describeEachDb("a full's shrink refusals", (t) => {
  const db = () => t().db;

  it("fewer rows than the last delivered full allows: refused, recorded, notified, nothing sent or moved; --force sends it", async () => {
    const fx = await stockFixture(db(), STOCK_SUB + OPS_SUB);
    const first = await fx.exporter.run("full", { trigger: "test" });
    if (first.status === "skipped") throw new Error("skipped");
    await db().query("update stock_sync.deliveries set status = 'delivered', delivered_at = now()");
    const sentBefore = await sentState(db());
    const watermark = async () => (await db().query("select * from stock_sync.stock_watermark")).rows;
    const watermarkBefore = await watermark();
    const messagesBefore = (await stockMessages(db())).length;
    await db().query(
      "create table kept_back as select * from inventory.stock_on_hand where (hashtext(sku || location) & 1023) < 400",
    );
    await db().query("delete from inventory.stock_on_hand where (hashtext(sku || location) & 1023) < 400");

    const refused = await fx.exporter.run("full", { trigger: "test" });
    if (refused.status === "skipped") throw new Error("skipped");
    expect(refused).toMatchObject({ kind: "full", status: "refused", runId: expect.any(Number) });
    expect(refused.rows).toBeLessThan(first.rows);
    expect(refused.snapshotId).toMatch(SNAPSHOT_ID);
    const why = `rows fell from ${first.rows} to ${refused.rows}`;
    expect(refused.detail).toMatch(
      new RegExp(`^${why} \\(-\\d+\\.\\d%, more than stock.guard.max_drop_ratio 0.2\\)$`),
    );
    await expectRecordedAsRefused(db(), refused);
    // the operator is told what was refused and how to send it anyway
    const { rows: notices } = await db().query<{ payload: Uint8Array }>(
      "select payload from stock_sync.messages where subject = 'ops.snapshot.refused'",
    );
    expect(notices).toHaveLength(1);
    const notice = JSON.parse(Buffer.from(notices[0]!.payload).toString("utf8"));
    expect(notice.detail).toBe(
      `full snapshot refused: ${refused.detail}. Check the source, or run \`stock-sync snapshot --force\`.`,
    );
    // nothing reached the OMS's queue, and what the next delta compares with did not move
    expect(await stockMessages(db())).toHaveLength(messagesBefore);
    expect(await sentState(db())).toEqual(sentBefore);
    expect(await watermark()).toEqual(watermarkBefore);

    const forced = await fx.exporter.run("full", { trigger: "test", force: true });
    expect(forced).toMatchObject({ status: "enqueued", rows: refused.rows });
    expect(applyToOms(await stockMessages(db()))).toEqual(
      withoutZeros(await sourceTruth(db(), DEFAULT_SELLABLE)),
    );
    await db().query("insert into inventory.stock_on_hand select * from kept_back");
    await db().query("drop table kept_back");
  });

  it("as many rows but too many at 0: refused in the publishing transaction (nothing sent), one run recorded; --force sends it", async () => {
    const fx = await stockFixture(db(), STOCK_SUB + OPS_SUB, { seed: false });
    await fx.exporter.run("full", { trigger: "test", force: true });
    await db().query("update stock_sync.deliveries set status = 'delivered', delivered_at = now()");
    const sentBefore = await sentState(db());
    const messagesBefore = (await stockMessages(db())).length;
    const runsBefore = await count(db(), "select id from stock_sync.stock_runs");
    await db().query(
      "update inventory.stock_on_hand set quantity = 0 where (hashtext(sku || location) & 1023) < 400",
    );

    const refused = await fx.exporter.run("full", { trigger: "test" });
    if (refused.status === "skipped") throw new Error("skipped");
    expect(refused).toMatchObject({ kind: "full", status: "refused", runId: expect.any(Number) });
    expect(refused.detail).toMatch(
      /^it would zero \d+ keys, \d+\.\d% of the \d+ rows of the last delivered full/,
    );
    await expectRecordedAsRefused(db(), refused);
    expect(await count(db(), "select id from stock_sync.stock_runs")).toBe(runsBefore + 1);
    expect(await stockMessages(db())).toHaveLength(messagesBefore);
    expect(await sentState(db())).toEqual(sentBefore);

    expect((await fx.exporter.run("full", { trigger: "test", force: true })).status).toBe("enqueued");
    expect(await sentState(db())).toEqual(await sourceTruth(db(), DEFAULT_SELLABLE));
  });
});

describeEachDb("a full's temp folder", (t) => {
  const db = () => t().db;

  it("is made (with its parents) for this user only, and removed after the run; one removed meanwhile fails nothing", async () => {
    const fx = await stockFixture(db());
    // a configured folder that does not exist yet
    const tmpDir = join(await testDir("stock-sync-tmp-"), "data", "tmp");
    const deps: ExportDeps = { ...fx.deps, tmpDir };
    const modes: number[] = [];
    const run = await runFull(deps, {
      trigger: "test",
      // while the run reads: its folder exists, readable by this user only
      onProgress: () => {
        for (const name of readdirSync(tmpDir)) modes.push(statSync(join(tmpDir, name)).mode & 0o777);
      },
    });
    expect(run.status).toBe("enqueued");
    expect(modes.length).toBeGreaterThan(0);
    expect(new Set(modes)).toEqual(new Set([0o700]));
    expect(await readdir(tmpDir)).toEqual([]);

    // a tmp cleaner that removed the folder before the run ended
    const dry = await runFull(deps, {
      trigger: "test",
      dryRun: true,
      onProgress: () => {
        for (const name of readdirSync(tmpDir)) rmSync(join(tmpDir, name), { recursive: true, force: true });
      },
    });
    expect(dry).toMatchObject({ status: "dry-run", rows: run.rows });
    expect(await readdir(tmpDir)).toEqual([]);
  });
});

describeEachDb("dry runs and --out change nothing", (t) => {
  const db = () => t().db;

  it("neither the state database nor the source's capture consumers; --out prints the CSV, --out --subscription its body", async () => {
    const fx = await stockFixture(db(), `${STOCK_SUB}${TEMPLATED}`);
    const nothingRecorded = async () => {
      expect(await count(db(), "select id from stock_sync.stock_runs")).toBe(0);
      expect(await count(db(), "select id from stock_sync.messages")).toBe(0);
      expect(await count(db(), "select sku from stock_sync.stock_sent")).toBe(0);
      // a deployment that only looked holds no capture rows on the source
      expect(await consumers(db())).toEqual([]);
    };
    const truth = await sourceTruth(db(), DEFAULT_SELLABLE);
    const dry = await fx.exporter.run("full", { trigger: "test", dryRun: true });
    expect(dry).toMatchObject({ kind: "full", status: "dry-run", runId: null, rows: truth.size });
    await nothingRecorded();

    const plain = sink();
    const written = await fx.exporter.run("full", { trigger: "test", out: plain.out });
    expect(written).toMatchObject({ kind: "full", status: "written", runId: null, rows: truth.size });
    const [header, ...lines] = plain.text().trim().split("\n");
    expect(header).toBe("sku,location,quantity");
    expect(lines).toHaveLength(truth.size);
    await nothingRecorded();

    const own = sink();
    const progress: number[] = [];
    const body = await fx.exporter.run("full", {
      trigger: "test",
      out: own.out,
      subscription: "rendered",
      onProgress: (n) => progress.push(n),
    });
    expect(body).toMatchObject({ kind: "full", status: "written", runId: null, rows: truth.size });
    if (body.status === "skipped") throw new Error("skipped");
    expect(JSON.parse(own.text())).toEqual({
      k: "full",
      id: body.snapshotId,
      at: expect.any(String),
      n: truth.size,
    });
    expect(progress.at(-1)).toBe(truth.size);
    await nothingRecorded();
  });
});

// A state database the connector may only read: a dry run and --out need no more.
describe.skipIf(!inject("pgTemplate"))("dry runs and --out on a read-only state database [postgres]", () => {
  it("a dry run, --out and --out --subscription write nothing to it (no sent-state load is begun)", async () => {
    const t = await createTestDb("postgres");
    const readOnly = openPostgres(readOnlyUrl(t.url!), { poolSize: 5 });
    try {
      const fx = await stockFixture(t.db, `${STOCK_SUB}${TEMPLATED}`);
      const deps: ExportDeps = { ...fx.deps, db: readOnly };
      const rows = (await sourceTruth(t.db, DEFAULT_SELLABLE)).size;
      expect(await runFull(deps, { trigger: "test", dryRun: true })).toMatchObject({
        status: "dry-run",
        rows,
      });
      expect(await runFull(deps, { trigger: "test", out: sink().out })).toMatchObject({
        status: "written",
        rows,
      });
      const own = sink();
      const body = await runFull(deps, { trigger: "test", out: own.out, subscription: "rendered" });
      expect(body).toMatchObject({ status: "written", rows });
      expect(JSON.parse(own.text())).toMatchObject({ k: "full", n: rows });
      // and it is read-only indeed: a stateful run cannot record itself
      await expect(runFull(deps, { trigger: "test" })).rejects.toThrow(/read-only transaction/);
    } finally {
      await readOnly.close();
      await t.drop();
    }
  });
});

/** The same database, every transaction read-only (a standby, or a role limited to reading). */
function readOnlyUrl(url: string): string {
  const options = encodeURIComponent("-c default_transaction_read_only=on");
  return `${url}${url.includes("?") ? "&" : "?"}options=${options}`;
}

describeEachDb("a full and the change-capture consumers", (t) => {
  const db = () => t().db;

  it("a new deployment's first full: another consumer pruning after its read takes nothing its next delta needs", async () => {
    // blue already reads this source; green (this deployment) has never run
    const fx = await stockFixture(db(), `${STOCK_SUB}stock:\n  capture: { consumer: green }\n`);
    expect(await consumers(db())).toEqual([]);
    const { rows: keys } = await db().query<{ sku: string; location: string }>(
      `select s.sku, s.location from inventory.stock_on_hand s join inventory.items i using (sku)
       join inventory.locations l on l.code = s.location where i.active and l.active and s.quantity > 20
       order by s.sku, s.location limit 1`,
    );
    const k = keys[0]!;
    let written = false;
    // after green's read, before it publishes: a write the full did not see, then blue's run
    // moves blue past it and prunes
    const state = spyDb(db(), {
      before: async (text) => {
        if (written || !text.includes("from stock_sync.stock_runs r")) return;
        written = true;
        await db().query(
          "update inventory.stock_on_hand set quantity = quantity + 9 where sku = $1 and location = $2",
          [k.sku, k.location],
        );
        await db().query(
          `insert into stock_sync_capture.consumers (name, position, generation)
           select 'blue', pg_current_xact_id(), generation from stock_sync_capture.install`,
        );
        await pruneChanges(db());
      },
    });
    const full = await runFull({ ...fx.deps, db: state }, { trigger: "test" });
    expect(full.status).toBe("enqueued");
    expect(written).toBe(true);
    expect(await consumers(db())).toEqual(["blue", "green"]);
    // the delta reads the one change (no compare of every key), and the OMS has the source's values
    const delta = await fx.exporter.run("delta", { trigger: "test" });
    expect(delta).toMatchObject({ status: "enqueued", rows: 1 });
    expect(delta.detail).toBeUndefined(); // not "compared every key: …"
    const last = (await stockMessages(db())).at(-1)!;
    expect(last.rows.map((r) => `${r.sku}|${r.location}`)).toEqual([`${k.sku}|${k.location}`]);
    expect(applyToOms(await stockMessages(db()))).toEqual(
      withoutZeros(await sourceTruth(db(), DEFAULT_SELLABLE)),
    );
  });

  it("full_diff: a full prunes the change rows nobody reads, and holds none itself", async () => {
    // capture installed (by another deployment), this one compares every key
    const fx = await stockFixture(db(), `${STOCK_SUB}stock:\n  capture: { mode: full_diff }\n`);
    await db().query("delete from stock_sync_capture.consumers");
    // a row older than any transaction (see capture-delta.test.ts)
    await db().query(
      "insert into stock_sync_capture.changes (xid, sku, location) values ('3'::xid8, 'OLD', 'X')",
    );
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    expect(await count(db(), "select 1 from stock_sync_capture.changes where sku = 'OLD'")).toBe(0);
    expect(await consumers(db())).toEqual([]);
  });
});

describeEachDb("a full on a source without change capture", (t) => {
  const db = () => t().db;

  it("is sent with no warning about capture", async () => {
    await seedDemoSource(db(), { fixturesDir: FIXTURES_DIR });
    const fx = await stockFixture(db(), STOCK_SUB, { seed: false });
    const log = capturedLog();
    const run = await runFull({ ...fx.deps, log: log.log }, { trigger: "test" });
    expect(run.status).toBe("enqueued");
    expect(log.warnings()).toEqual([]);
  });
});

describe.skipIf(!inject("pgTemplate"))("a full reading a read-only source [postgres]", () => {
  it("is sent; the consumer it could not register nor advance is logged as a warning each", async () => {
    const t = await createTestDb("postgres");
    const source = openPostgres(readOnlyUrl(t.url!), { poolSize: 3 });
    try {
      const fx = await stockFixture(t.db);
      const log = capturedLog();
      const run = await runFull({ ...fx.deps, source, log: log.log }, { trigger: "test" });
      expect(run.status).toBe("enqueued");
      expect(
        log.warnings().map((w) => [w.msg, (w.err as { message?: string } | undefined)?.message]),
      ).toEqual([
        [
          "could not register this consumer of the capture table (read-only source?)",
          expect.stringMatching(/read-only transaction/),
        ],
        ["could not prune the change-capture table", expect.stringMatching(/read-only transaction/)],
      ]);
      expect(await consumers(t.db)).toEqual([]);
    } finally {
      await source.close();
      await t.drop();
    }
  });
});
