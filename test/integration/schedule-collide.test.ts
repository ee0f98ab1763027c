import { Writable } from "node:stream";
import { afterEach, expect, it, onTestFinished } from "vitest";
import { systemClock } from "../../src/clock.js";
import type { Db } from "../../src/db/db.js";
import { createExporter } from "../../src/export/exporter.js";
import { stockStatus } from "../../src/export/status.js";
import { createLogger } from "../../src/log.js";
import { fullOverdueAfterMs } from "../../src/scheduler/full-due.js";
import { notifyFullNotRun } from "../../src/scheduler/notify.js";
import { startScheduler } from "../../src/scheduler/scheduler.js";
import { runCli } from "../helpers/cli.js";
import { describeEachDb } from "../helpers/db.js";
import { testConfig, waitUntil } from "../helpers/engine.js";
import { startServer } from "../helpers/http.js";
import { STOCK_SUB, stockFixture } from "../helpers/stock.js";

const stops: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** A cron expression (with seconds) that fires once, at `at` (local time, as node-cron reads it). */
const cronAt = (at: Date) =>
  `${at.getSeconds()} ${at.getMinutes()} ${at.getHours()} ${at.getDate()} ${at.getMonth() + 1} *`;
/** A whole second at least `ms` from now. */
const soon = (ms: number) => new Date(Math.ceil((Date.now() + ms) / 1000) * 1000);
const NOTIFY = `notifications:\n  on_failure: ["https://127.0.0.1:9/notify"]\n`;
const stockYaml = (full: string, retry = "1s") =>
  `${STOCK_SUB}${NOTIFY}stock:\n  full: { schedule: "${full}", retry: "${retry}" }\n  delta: { schedule: "0 0 1 1 *" }\n`;

const scheduledFulls = async (db: Db) =>
  (
    await db.query<{ status: string; started_at: Date }>(
      "select status, started_at from stock_sync.stock_runs where kind = 'full' and trigger = 'schedule' order by id",
    )
  ).rows;
const setLock = (db: Db, owner: string | null) =>
  db.query(
    "update stock_sync.stock_lock set owner = $1, until = case when $1::text is null then null else now() + interval '1 minute' end",
    [owner],
  );

const warningsIn = (lines: string[]) =>
  lines
    .map((l) => JSON.parse(l) as { level: number; msg: string })
    .filter((l) => l.level === 40)
    .map((l) => l.msg);
/** The payloads of the notifications with this subject. */
const opsMessages = async (db: Db, subject: string) =>
  (
    await db.query<{ payload: Uint8Array }>("select payload from stock_sync.messages where subject = $1", [
      subject,
    ])
  ).rows.map((r) => Buffer.from(r.payload).toString());

/** A logger whose JSON lines the test can read. */
function capturedLog() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split("\n").filter(Boolean));
      cb();
    },
  });
  return { log: createLogger({ level: "info", format: "json", destination }), lines };
}

describeEachDb("the hourly full is never dropped (issue 12.1)", (t) => {
  afterEach(async () => {
    await setLock(t().db, null); // a failed test leaves no lock behind for the next
  });

  it("a full due while another process's delta holds the stock lock runs right after it", async () => {
    const fx = await stockFixture(t().db, stockYaml("0 0 1 1 *"));
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued"); // no start-up full
    await setLock(t().db, "other-process:delta");
    const fireAt = soon(2000);
    const { log, lines } = capturedLog();
    const scheduler = await startScheduler(
      {
        db: t().db,
        clock: systemClock,
        log,
        exporter: createExporter(fx.deps),
        notify: (detail) => notifyFullNotRun(fx.deps, detail),
      },
      testConfig(stockYaml(cronAt(fireAt))).stock, // retry: 1s
    );
    stops.push(() => scheduler.stop());
    await waitUntil(async () => Date.now() > fireAt.getTime() + 2500, 10_000, "the full's fire time");
    expect(await scheduledFulls(t().db)).toEqual([]); // it waits for the lock…
    // …and, having waited longer than stock.full.retry, says so (warning and notification).
    expect(warningsIn(lines)).toContainEqual(
      expect.stringMatching(/did not run: it has waited for the stock lock/),
    );
    expect(await opsMessages(t().db, "ops.snapshot.failed")).toContainEqual(
      expect.stringContaining("waited for the stock lock"),
    );
    await setLock(t().db, null);
    const [full] = await waitUntil(
      async () => {
        const runs = (await scheduledFulls(t().db)).filter((r) => r.status !== "running");
        return runs.length ? runs : undefined;
      },
      20_000,
      "the full, once the lock is free",
    );
    expect(full!.status).toBe("enqueued"); // …and runs right after, not at the next fire (a year away)
    expect(full!.started_at.getTime()).toBeGreaterThan(fireAt.getTime());
  });

  it("a full that failed is retried, with a warning and an ops.snapshot.failed notification", async () => {
    const fx = await stockFixture(t().db, stockYaml("0 0 1 1 *"), { seed: !(await seeded(t().db)) });
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    await t().db.query("delete from stock_sync.stock_runs where trigger = 'schedule'");
    await t().db.query("delete from stock_sync.notifications_sent"); // notified at most once an hour
    await t().db.query("delete from stock_sync.notifications_sent"); // notified at most once an hour
    let failures = 1;
    const source = new Proxy(t().db, {
      get(target, prop) {
        if (prop === "tx" && failures > 0)
          return async () => {
            failures--;
            throw new Error("source connection reset");
          };
        const v = Reflect.get(target, prop);
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const { log, lines } = capturedLog();
    const fireAt = soon(1500);
    const deps = { ...fx.deps, source };
    const scheduler = await startScheduler(
      {
        db: t().db,
        clock: systemClock,
        log,
        exporter: createExporter(deps),
        notify: (detail) => notifyFullNotRun(deps, detail),
      },
      testConfig(stockYaml(cronAt(fireAt))).stock,
    );
    stops.push(() => scheduler.stop());
    await waitUntil(
      async () => (await scheduledFulls(t().db)).some((r) => r.status === "enqueued"),
      20_000,
      "the retried full",
    );
    expect(warningsIn(lines)).toContainEqual(
      expect.stringMatching(/did not run: source connection reset; retrying/),
    );
    expect(await opsMessages(t().db, "ops.snapshot.failed")).toContainEqual(
      expect.stringContaining("source connection reset"),
    );
  });

  it("status says 'full overdue' when the last successful full is older than its period plus a margin", async () => {
    const yaml = stockYaml("0 * * * *", "5m");
    const fx = await stockFixture(t().db, yaml, { seed: !(await seeded(t().db)) });
    const after = fullOverdueAfterMs(fx.config.stock);
    expect(after).toBe(80 * 60_000); // 1 h + 15 min + the 5 min retry
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    expect((await stockStatus(t().db, undefined, { fullOverdueAfterMs: after })).full_overdue).toBe(false);

    // The fulls since then all failed or were refused: the last good one is 90 minutes old.
    await t().db.query(
      "update stock_sync.stock_runs set started_at = started_at - interval '90 minutes', finished_at = finished_at - interval '90 minutes'",
    );
    const status = await stockStatus(t().db, undefined, { fullOverdueAfterMs: after });
    expect(status.full_overdue).toBe(true);
    const server = await startServer(t().db, fx.config);
    stops.push(() => server.close());
    const api = (await (await fetch(`${server.url}/api/status`)).json()) as {
      stock: { full_overdue: boolean };
    };
    expect(api.stock.full_overdue).toBe(true);
    expect(await (await fetch(`${server.url}/status`)).text()).toContain("full overdue");
    if (t().url) {
      const { writeFile, mkdtemp, rm } = await import("node:fs/promises");
      const { join } = await import("node:path");
      const { tmpdir } = await import("node:os");
      const dir = await mkdtemp(join(tmpdir(), "stock-sync-overdue-"));
      onTestFinished(() => rm(dir, { recursive: true, force: true }));
      const path = join(dir, "c.yaml");
      await writeFile(path, `database: { url: "${t().url}" }\nsource: { url: "${t().url}" }\n${yaml}`);
      const r = await runCli(["--config", path, "status"]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("full overdue");
    }
    // A new successful full clears it.
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    expect((await stockStatus(t().db, undefined, { fullOverdueAfterMs: after })).full_overdue).toBe(false);
  });
});

const seeded = async (db: Db) =>
  (await db.query("select 1 from information_schema.schemata where schema_name = 'inventory'")).rows.length >
  0;
