import cron from "node-cron";
import { afterEach, expect, it } from "vitest";
import { fixedClock } from "../../src/clock.js";
import type { Config } from "../../src/config/index.js";
import type { Db } from "../../src/db/db.js";
import type { Exporter, Skipped } from "../../src/export/exporter.js";
import type { RunOptions, RunResult } from "../../src/export/run.js";
import type { RunKind } from "../../src/export/state.js";
import { type Scheduler, startScheduler } from "../../src/scheduler/scheduler.js";
import { describeEachDb } from "../helpers/db.js";
import { testConfig, waitUntil } from "../helpers/engine.js";
import { fullResult } from "../helpers/run-result.js";
import { capturedLog } from "../helpers/captured-log.js";

/**
 * The scheduler's decisions, one at a time and quickly (docs/testing.md, mutation testing): what
 * it does after each kind of attempt at a due full, when it warns and notifies, when a delta tick
 * is folded into a due full, and how it stops. The exporter is scripted (the scheduler's side of
 * it: run, busy, idle) so each outcome comes when the test wants it; the database, node-cron and
 * the run coordinator are real. The end-to-end tests with the real exporter are scheduler.test.ts
 * and schedule-collide.test.ts.
 */

const DAY = 86_400_000; // the period of "0 0 1 1 *": it skips days, so a day (cronGaps)
const NEVER = "0 0 1 1 *";
const T0 = new Date("2026-06-01T12:00:00.000Z");

type Call = { kind: RunKind; opts: RunOptions };
type Outcome = RunResult | Skipped | Error;

const skipped = (reason: Skipped["reason"], kind: RunKind = "full"): Skipped => ({
  kind,
  status: "skipped",
  reason,
  detail: `why ${reason}`,
});
const needsFull = () => Object.assign(new Error("change capture is broken"), { needsFull: true });

/** An exporter that answers each run with what `answer` returns (or throws), and records the calls. */
function scriptedExporter(answer: (call: Call, n: number) => Outcome | Promise<Outcome>) {
  const calls: Call[] = [];
  let idles = 0;
  let busy: RunKind | null = null;
  let running = 0;
  let maxRunning = 0;
  const exporter: Exporter = {
    async run(kind, opts) {
      calls.push({ kind, opts });
      running++;
      maxRunning = Math.max(maxRunning, running);
      try {
        const out = await answer({ kind, opts }, calls.filter((c) => c.kind === kind).length);
        if (out instanceof Error) throw out;
        return out;
      } finally {
        running--;
      }
    },
    busy: () => busy,
    idle: async () => {
      idles++;
    },
  };
  return {
    exporter,
    calls,
    fulls: () => calls.filter((c) => c.kind === "full"),
    deltas: () => calls.filter((c) => c.kind === "delta"),
    idles: () => idles,
    maxRunning: () => maxRunning,
    setBusy: (kind: RunKind | null) => (busy = kind),
  };
}

const stockConfig = (full: string, delta: string, retryMs: number): Config["stock"] => {
  const stock = testConfig(
    `stock:\n  full: { schedule: "${full}" }\n  delta: { schedule: "${delta}" }\n`,
  ).stock;
  return { ...stock, full: { ...stock.full, retry: retryMs } };
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = (cond: () => boolean, what: string, ms = 15_000) => waitUntil(async () => cond(), ms, what);

const dueSince = (since: Date) => `the full stock snapshot due since ${since.toISOString()} did not run: `;

describeEachDb("scheduler decisions", (t) => {
  const schedulers: Scheduler[] = [];
  afterEach(async () => {
    for (const s of schedulers.splice(0)) await s.stop();
  });

  async function start(
    x: ReturnType<typeof scriptedExporter>,
    stock: Config["stock"],
    opts: {
      clock?: ReturnType<typeof fixedClock>;
      lastFull?: Date | null;
      notify?: (d: string) => Promise<void>;
    } = {},
  ) {
    // one scheduler at a time: another would claim the delta ticks (the run coordinator)
    for (const s of schedulers.splice(0)) await s.stop();
    const db = t().db;
    await db.query("delete from stock_sync.stock_runs");
    await db.query("delete from stock_sync.cron_runs");
    if (opts.lastFull) await insertFull(db, opts.lastFull);
    const clock = opts.clock ?? fixedClock(T0);
    const captured = capturedLog();
    const notified: string[] = [];
    const scheduler = await startScheduler(
      {
        db,
        clock,
        log: captured.log,
        exporter: x.exporter,
        notify: opts.notify ?? (async (d) => void notified.push(d)),
      },
      stock,
    );
    schedulers.push(scheduler);
    return { scheduler, clock, notified, ...captured };
  }

  it("at start, a full is owed since now minus its period when none was sent within the period", async () => {
    const x = scriptedExporter(() => fullResult("enqueued"));
    const s = await start(x, stockConfig(NEVER, NEVER, 60_000), { lastFull: null });
    // the first attempt is made before startScheduler returns
    expect(x.calls).toEqual([
      { kind: "full", opts: { trigger: "start", unlessFullSince: new Date(T0.getTime() - DAY) } },
    ]);
    await sleep(100); // done: nothing more is owed, no second attempt
    await s.scheduler.stop();
    expect(x.calls).toHaveLength(1);
    expect(s.warnings()).toEqual([]);

    // the last full finished a period ago exactly: still within it, none owed
    const y = scriptedExporter(() => fullResult("enqueued"));
    await start(y, stockConfig(NEVER, NEVER, 60_000), { lastFull: new Date(T0.getTime() - DAY) });
    expect(y.calls).toEqual([]);
    // a millisecond more: owed
    const z = scriptedExporter(() => fullResult("enqueued"));
    await start(z, stockConfig(NEVER, NEVER, 60_000), { lastFull: new Date(T0.getTime() - DAY - 1) });
    expect(z.fulls()).toHaveLength(1);
  });

  it("a run busy in this process is waited for (idle), a lock held elsewhere is polled; then the same full again", async () => {
    const busy = scriptedExporter((_c, n) => (n === 1 ? skipped("busy") : fullResult("enqueued")));
    const a = await start(busy, stockConfig(NEVER, NEVER, 60_000));
    await until(() => busy.calls.length === 2, "the attempt after the busy run");
    expect(busy.idles()).toBe(1);
    expect(busy.calls[1]).toEqual(busy.calls[0]); // the same full, owed since the same time
    await a.scheduler.stop();

    const locked = scriptedExporter((_c, n) => (n === 1 ? skipped("locked") : fullResult("enqueued")));
    const b = await start(locked, stockConfig(NEVER, NEVER, 60_000));
    await until(() => locked.calls.length === 2, "the attempt after the lock poll");
    expect(locked.idles()).toBe(0); // a lock held elsewhere: no run of ours to wait for
    expect(locked.calls[1]).toEqual(locked.calls[0]);
    await sleep(100);
    await b.scheduler.stop();
    expect(locked.calls).toHaveLength(2);
    // a full sent by another process meanwhile ("done") ends it too
    const done = scriptedExporter(() => skipped("done"));
    const c = await start(done, stockConfig(NEVER, NEVER, 60_000));
    await sleep(100);
    await c.scheduler.stop();
    expect(done.calls).toHaveLength(1);
    expect(c.warnings()).toEqual([]);
  });

  it("waiting for the lock as long as stock.full.retry warns and notifies once, counted from the first wait after a retry", async () => {
    const clock = fixedClock(T0);
    // (at, outcome) per attempt, on the injected clock: the wait is judged on it
    const script: [number, Outcome][] = [
      [0, skipped("busy")], // waiting since T0
      [100, fullResult("failed", "disk full")], // a retry: the wait starts again
      [250, skipped("busy")], // waiting since T0+250
      [449, skipped("busy")], // 199 ms: not yet
      [450, skipped("busy")], // 200 ms = retry: warn
      [460, fullResult("failed", "again")], // a retry: the wait starts again…
      [470, skipped("busy")],
      [5000, skipped("busy")], // …but the warning about waiting was given: once only
      [6000, fullResult("enqueued")],
    ];
    const x = scriptedExporter((_c, n) => {
      const [at, out] = script[n - 1]!;
      clock.set(new Date(T0.getTime() + at));
      return out;
    });
    const s = await start(x, stockConfig(NEVER, NEVER, 200), { clock });
    await until(() => x.calls.length === script.length, "every scripted attempt");
    await s.scheduler.stop();
    const since = new Date(T0.getTime() - DAY);
    const waited = `${dueSince(since)}it has waited for the stock lock since ${new Date(T0.getTime() + 250).toISOString()}`;
    const failed = `${dueSince(since)}ended failed: disk full; retrying in 0.2s`;
    const again = `${dueSince(since)}ended failed: again; retrying in 0.2s`;
    expect(s.warnings().map((l) => l.msg)).toEqual([failed, waited, again]);
    expect(s.warnings().map((l) => l.kind)).toEqual(["full", "full", "full"]);
    expect(s.notified).toEqual([failed, waited, again]);
  });

  it("a failed, refused or throwing full is retried after stock.full.retry with a warning; a refusal is not notified again", async () => {
    const script: Outcome[] = [
      fullResult("failed", "disk full"),
      fullResult("failed"),
      fullResult("refused", "the snapshot shrank by 90%"),
      new Error("source connection reset"),
      fullResult("enqueued"),
    ];
    const x = scriptedExporter((_c, n) => script[n - 1]!);
    const s = await start(x, stockConfig(NEVER, NEVER, 100));
    await until(() => x.calls.length === script.length, "every scripted attempt");
    await sleep(300);
    await s.scheduler.stop();
    expect(x.calls).toHaveLength(script.length);
    const since = dueSince(new Date(T0.getTime() - DAY));
    const texts = [
      `${since}ended failed: disk full; retrying in 0.1s`,
      `${since}ended failed; retrying in 0.1s`,
      `${since}refused by the shrink guard: the snapshot shrank by 90%; retrying in 0.1s`,
      `${since}source connection reset; retrying in 0.1s`,
    ];
    expect(s.warnings().map((l) => l.msg)).toEqual(texts);
    expect(s.notified).toEqual([texts[0], texts[1], texts[3]]);
  });

  it("the retry waits stock.full.retry: no second attempt while it lasts, and stop ends the wait", async () => {
    const x = scriptedExporter(() => fullResult("failed", "disk full"));
    const s = await start(x, stockConfig(NEVER, NEVER, 600_000));
    await sleep(1000);
    expect(x.calls).toHaveLength(1);
    await s.scheduler.stop(); // resolves at once, not after ten minutes
    expect(x.calls).toHaveLength(1);
  });

  it("a notification that cannot be sent is logged; the full is still retried", async () => {
    const x = scriptedExporter((_c, n) => (n === 1 ? new Error("boom") : fullResult("enqueued")));
    const s = await start(x, stockConfig(NEVER, NEVER, 50), {
      notify: async () => {
        throw new Error("mail down");
      },
    });
    await until(() => x.calls.length === 2, "the retry");
    const line = s.warnings().find((l) => l.msg === "could not notify");
    expect(line).toMatchObject({ err: { message: "mail down" } });
  });

  it("stop during an attempt: no attempt after it, whatever the outcome", async () => {
    for (const outcome of [skipped("locked"), fullResult("failed", "x")]) {
      let release: (o: Outcome) => void = () => undefined;
      const x = scriptedExporter(() => new Promise<Outcome>((r) => (release = r)));
      const s = await start(x, stockConfig(NEVER, NEVER, 600_000));
      expect(x.calls).toHaveLength(1);
      const stopped = s.scheduler.stop();
      release(outcome);
      await stopped; // not after the lock poll or the ten-minute retry
      expect(x.calls).toHaveLength(1);
    }
  });

  it("delta ticks: run once per tick through the run coordinator (claimed on the injected clock), never two at once", async () => {
    const x = scriptedExporter(async (c) => {
      if (c.kind === "delta") await sleep(2500); // longer than the tick interval
      return { ...fullResult("enqueued"), kind: c.kind };
    });
    const s = await start(x, stockConfig(NEVER, "* * * * * *", 60_000), { lastFull: T0 });
    await until(() => x.deltas().length >= 2, "two delta runs");
    expect(x.fulls()).toEqual([]); // a full was sent within its period
    expect(x.maxRunning()).toBe(1); // a tick while the delta runs is not run beside it
    expect(x.deltas()[0]).toEqual({ kind: "delta", opts: { trigger: "schedule" } });
    const { rows } = await t().db.query<{ key: string; by: string; at: Date }>(
      "select key, claimed_by as by, claimed_at as at from stock_sync.cron_runs",
    );
    expect(rows.length).toBeGreaterThanOrEqual(2);
    for (const r of rows) {
      expect(r.key).toMatch(/^stock-delta:/);
      expect(r.by).toMatch(/^.+:\d+:[0-9a-f]{6}$/); // host:pid:random, one per scheduler
      expect(r.at.getTime()).toBe(T0.getTime());
    }
    expect(new Set(rows.map((r) => r.by)).size).toBe(1);
    expect(s.lines.filter((l) => l.msg === "delta tick folded into the due full snapshot")).toEqual([]);
    expect(s.lines.filter((l) => l.msg === "stock tick skipped")).toEqual([]); // they were not
  });

  it("a skipped delta tick is logged with its reason; a failed one is logged, and owes a full only when change capture broke", async () => {
    const clock = fixedClock(T0);
    let n = 0;
    const answers: Outcome[] = [skipped("locked", "delta"), new Error("source down"), needsFull()];
    const x = scriptedExporter((c) => {
      if (c.kind === "full") return fullResult("enqueued");
      clock.set(new Date(T0.getTime() + 1000 * (n + 1)));
      return answers[n++] ?? { ...fullResult("enqueued"), kind: "delta" };
    });
    // no full sent yet: the start-up full first (done at once), so the one owed later is a
    // second drive of the due full
    const s = await start(x, stockConfig(NEVER, "* * * * * *", 60_000), { clock });
    await until(() => x.fulls().length === 2, "the full owed after the broken change capture");
    expect(x.fulls()[0]!.opts.trigger).toBe("start");
    // owed since the broken change capture (the third tick), on the injected clock: the plain
    // failure (the second) owed none
    expect(x.fulls()[1]).toEqual({
      kind: "full",
      opts: { trigger: "schedule", unlessFullSince: new Date(T0.getTime() + 3000) },
    });
    const skippedLine = s.lines.find((l) => l.msg === "stock tick skipped");
    expect(skippedLine).toMatchObject({ level: 30, kind: "delta", reason: "why locked" });
    const failures = s.lines.filter((l) => l.msg === "scheduled stock delta failed");
    expect(failures.map((l) => [l.level, l.kind])).toEqual([
      [50, "delta"],
      [50, "delta"],
    ]);
  });

  it("a delta tick is folded into a full that is due or running, but not into one waiting for its retry", async () => {
    // a full waiting for the lock: due, so the ticks fold
    const locked = scriptedExporter((c) => (c.kind === "full" ? skipped("locked") : fullResult("enqueued")));
    const a = await start(locked, stockConfig(NEVER, "* * * * * *", 60_000));
    const folded = () => a.lines.filter((l) => l.msg === "delta tick folded into the due full snapshot");
    await until(() => folded().length >= 2, "two folded ticks");
    expect(locked.deltas()).toEqual([]);
    expect(folded()[0]).toMatchObject({ level: 30, kind: "delta" });
    await a.scheduler.stop();

    // a full that failed, waiting for its retry: the deltas go on meanwhile
    const failing = scriptedExporter((c) =>
      c.kind === "full" ? fullResult("failed", "x") : { ...fullResult("enqueued"), kind: "delta" },
    );
    await start(failing, stockConfig(NEVER, "* * * * * *", 600_000));
    await until(() => failing.deltas().length >= 1, "a delta during the retry wait");
    expect(failing.fulls()).toHaveLength(1);

    // after the retry wait, the full is due again: the ticks fold again
    const retried = scriptedExporter((c, n) =>
      c.kind === "full" ? (n === 1 ? fullResult("failed", "x") : skipped("locked")) : fullResult("enqueued"),
    );
    const b = await start(retried, stockConfig(NEVER, "* * * * * *", 100));
    const foldedB = () => b.lines.filter((l) => l.msg === "delta tick folded into the due full snapshot");
    await until(() => foldedB().length >= 2, "two folded ticks after the retry wait");

    // a full running in this process (a command's, not the scheduler's): folded too; a delta is not
    const running = scriptedExporter(() => ({ ...fullResult("enqueued"), kind: "delta" }));
    running.setBusy("full");
    const c = await start(running, stockConfig(NEVER, "* * * * * *", 60_000), { lastFull: T0 });
    await until(
      () => c.lines.some((l) => l.msg === "delta tick folded into the due full snapshot"),
      "a folded tick",
    );
    expect(running.calls).toEqual([]);
    running.setBusy("delta");
    await until(() => running.deltas().length >= 1, "a delta beside a busy delta (the exporter skips it)");
  });

  it("a full owed again while one is attempted is attempted again for the newer time; an older one changes nothing", async () => {
    // Two full fire times a second apart; the first attempt lasts past the second.
    const first = new Date(Math.ceil((Date.now() + 1500) / 1000) * 1000);
    const second = new Date(first.getTime() + 1000);
    const cronAt = (ats: Date[]) => `${ats.map((a) => a.getSeconds()).join(",")} * * * * *`;
    const x = scriptedExporter(async (_c, n) => {
      if (n === 1) await until(() => Date.now() > second.getTime() + 500, "the second fire time");
      return fullResult("enqueued");
    });
    await start(x, stockConfig(cronAt([first, second]), NEVER, 60_000), { lastFull: T0 });
    await until(() => x.calls.length === 2, "the attempt for the second fire");
    await sleep(200);
    expect(x.calls.map((c) => [c.opts.trigger, c.opts.unlessFullSince?.getTime()])).toEqual([
      ["schedule", first.getTime()],
      ["schedule", second.getTime()],
    ]);

    // Owed at start (since T0 - 1 day) and failing; a broken change capture owes a full since
    // an older time (the injected clock went back): the due full keeps its own time.
    const clock = fixedClock(T0);
    const y = scriptedExporter((c, n) => {
      if (c.kind === "delta") {
        clock.set(new Date(T0.getTime() - 2 * DAY));
        return needsFull();
      }
      return n === 1 ? fullResult("failed", "x") : fullResult("enqueued");
    });
    const s = await start(y, stockConfig(NEVER, "* * * * * *", 2500), { clock });
    await until(() => y.fulls().length === 2, "the retried full");
    expect(y.deltas().length).toBeGreaterThanOrEqual(1);
    expect(y.fulls()[1]!.opts.unlessFullSince).toEqual(new Date(T0.getTime() - DAY));
    await s.scheduler.stop();
  });

  it("next() gives each schedule's next fire; the cron tasks are named, and gone after stop", async () => {
    const x = scriptedExporter(() => fullResult("enqueued"));
    const before = Date.now();
    const s = await start(x, stockConfig(NEVER, "*/10 * * * * *", 60_000), { lastFull: T0 });
    const { full, delta } = s.scheduler.next();
    expect(full?.getTime()).toBe(new Date(new Date(before).getFullYear() + 1, 0, 1).getTime());
    expect(delta!.getTime() % 10_000).toBe(0);
    expect(delta!.getTime()).toBeGreaterThan(before);
    expect(delta!.getTime()).toBeLessThanOrEqual(Date.now() + 10_000);
    const names = () => [...cron.getTasks().values()].map((task) => task.name);
    expect(names()).toEqual(expect.arrayContaining(["stock-full", "stock-delta"]));
    await s.scheduler.stop();
    expect(names()).not.toContain("stock-full");
    expect(names()).not.toContain("stock-delta");
  });
});

function insertFull(db: Db, finishedAt: Date) {
  return db.query(
    `insert into stock_sync.stock_runs (kind, trigger, snapshot_id, status, started_at, finished_at)
     values ('full', 'test', 'full-test', 'enqueued', $1, $1)`,
    [finishedAt],
  );
}
