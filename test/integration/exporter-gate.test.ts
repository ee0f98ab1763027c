import { Writable } from "node:stream";
import { afterEach, expect, it } from "vitest";
import { fixedClock } from "../../src/clock.js";
import type { Db } from "../../src/db/db.js";
import { createExporter } from "../../src/export/exporter.js";
import { describeEachDb } from "../helpers/db.js";
import { stockFixture } from "../helpers/stock.js";
import { capturedLog } from "../helpers/captured-log.js";

/**
 * The exporter's gate (docs/testing.md, mutation testing of exporter.ts): one stock run at a time
 * in a process and across processes (the stock lock), runs that change no state need no lock, and
 * a due full that was sent meanwhile is not sent twice. Real exporter, real database.
 */

const setLock = (db: Db, owner: string | null) =>
  db.query(
    "update stock_sync.stock_lock set owner = $1, until = case when $1::text is null then null else now() + interval '1 minute' end",
    [owner],
  );
const lock = async (db: Db) =>
  (
    await db.query<{ owner: string | null; left: number | null }>(
      "select owner, extract(epoch from until - now())::float8 as left from stock_sync.stock_lock",
    )
  ).rows[0]!;

/** A source whose transactions wait for `open()` (or fail, with `fail`). */
function gatedSource(db: Db) {
  let gate: Promise<void> | null = null;
  let open: () => void = () => undefined;
  let fail: string | null = null;
  const source = new Proxy(db, {
    get(target, prop) {
      if (prop === "tx")
        return async (fn: Parameters<Db["tx"]>[0]) => {
          if (fail) throw new Error(fail);
          await gate;
          return target.tx(fn);
        };
      const v = Reflect.get(target, prop);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return {
    source,
    close: () => {
      gate = new Promise<void>((r) => (open = r));
    },
    open: () => open(),
    fail: (message: string | null) => (fail = message),
  };
}

describeEachDb("the exporter's gate: one stock run at a time", (t) => {
  let seeded = false;
  afterEach(async () => {
    await setLock(t().db, null);
  });

  async function fixture(opts: { lockMs?: number; clock?: ReturnType<typeof fixedClock> } = {}) {
    const fx = await stockFixture(t().db, undefined, { seed: !seeded });
    seeded = true;
    const gated = gatedSource(t().db);
    const captured = capturedLog();
    const deps = {
      ...fx.deps,
      source: gated.source,
      log: captured.log,
      ...(opts.clock ? { clock: opts.clock } : {}),
    };
    return {
      ...fx,
      deps,
      gated,
      lines: captured.lines,
      exporter: createExporter(deps, { lockMs: opts.lockMs }),
    };
  }

  it("a run while one is in progress in this process is skipped; busy() and idle() follow the run", async () => {
    const fx = await fixture();
    expect(fx.exporter.busy()).toBeNull();
    fx.gated.close();
    const first = fx.exporter.run("full", { trigger: "test" });
    expect(fx.exporter.busy()).toBe("full");
    expect(await fx.exporter.run("delta", { trigger: "test" })).toEqual({
      kind: "delta",
      status: "skipped",
      reason: "busy",
      detail: "a full run is in progress in this process",
    });
    // the lock is ours while the run lasts, for the lease asked for (on the database's clock)
    await waitFor(async () => (await lock(t().db)).owner !== null);
    const held = await lock(t().db);
    expect(held.owner).toMatch(/^.+:\d+:[0-9a-f]{6}$/);
    expect(held.left).toBeGreaterThan(60);
    expect(held.left).toBeLessThanOrEqual(120);
    const order: string[] = [];
    void first.then(() => order.push("run"));
    const idle = fx.exporter.idle().then(() => order.push("idle"));
    fx.gated.open();
    expect((await first).status).toBe("enqueued");
    await idle;
    expect(order).toEqual(["run", "idle"]);
    expect(fx.exporter.busy()).toBeNull();
    expect(await lock(t().db)).toEqual({ owner: null, left: null }); // released
    expect(fx.lines).toContainEqual(
      expect.objectContaining({ level: 30, msg: "stock full: enqueued", kind: "full" }),
    );
  });

  it("a run that fails frees the process and the lock; idle() resolves all the same", async () => {
    const fx = await fixture({ lockMs: 40_000 });
    fx.gated.fail("source connection reset");
    await expect(fx.exporter.run("full", { trigger: "test" })).rejects.toThrow("source connection reset");
    await fx.exporter.idle();
    expect(fx.exporter.busy()).toBeNull();
    expect((await lock(t().db)).owner).toBeNull();
    fx.gated.fail(null);
    // the next run goes ahead, with the lease asked for
    fx.gated.close();
    const next = fx.exporter.run("full", { trigger: "test" });
    await waitFor(async () => (await lock(t().db)).owner !== null);
    const held = await lock(t().db);
    expect(held.left).toBeGreaterThan(20);
    expect(held.left).toBeLessThanOrEqual(40);
    fx.gated.open();
    expect((await next).status).toBe("enqueued");
  });

  it("the stock lock held by another process: skipped; a dry run or --out needs no lock and leaves it alone", async () => {
    const fx = await fixture();
    await setLock(t().db, "other-process");
    expect(await fx.exporter.run("delta", { trigger: "test" })).toEqual({
      kind: "delta",
      status: "skipped",
      reason: "locked",
      detail: "another process is running a stock export",
    });
    expect(fx.exporter.busy()).toBeNull();
    expect((await fx.exporter.run("full", { trigger: "test", dryRun: true })).status).toBe("dry-run");
    const chunks: Buffer[] = [];
    const out = new Writable({
      write(chunk, _enc, cb) {
        chunks.push(Buffer.from(chunk));
        cb();
      },
    });
    expect((await fx.exporter.run("full", { trigger: "test", out })).status).toBe("written");
    expect(Buffer.concat(chunks).toString()).toMatch(/^sku,location,quantity/);
    expect((await lock(t().db)).owner).toBe("other-process");
  });

  it("a due full sent meanwhile is not sent again: since a time, or within a period", async () => {
    const clock = fixedClock(new Date());
    const fx = await fixture({ clock });
    // no full ever sent (the earlier ones of this file count as failed): nothing within any period
    await t().db.query("update stock_sync.stock_runs set status = 'failed' where kind = 'full'");
    expect((await fx.exporter.run("full", { trigger: "test", unlessFullWithinMs: 60_000 })).status).toBe(
      "enqueued",
    );
    const { rows } = await t().db.query<{ started_at: Date; finished_at: Date }>(
      "select started_at, finished_at from stock_sync.stock_runs where kind = 'full' order by id desc limit 1",
    );
    const { started_at: started, finished_at: finished } = rows[0]!;
    const done = { kind: "full", status: "skipped", reason: "done", detail: "a full was enqueued meanwhile" };
    expect(await fx.exporter.run("full", { trigger: "start", unlessFullSince: started })).toEqual(done);
    expect((await lock(t().db)).owner).toBeNull(); // released after the check too
    // within the period: judged on the injected clock, the edge included
    clock.set(new Date(finished.getTime() + 60_000));
    expect(await fx.exporter.run("full", { trigger: "test", unlessFullWithinMs: 60_000 })).toEqual(done);
    clock.set(new Date(finished.getTime() + 60_001));
    expect((await fx.exporter.run("full", { trigger: "test", unlessFullWithinMs: 60_000 })).status).toBe(
      "enqueued",
    );
    // a full sent before the time it was due since does not count
    const later = new Date(clock.now().getTime() + 1);
    expect((await fx.exporter.run("full", { trigger: "start", unlessFullSince: later })).status).toBe(
      "enqueued",
    );
  });
});

async function waitFor(cond: () => Promise<boolean>) {
  const deadline = Date.now() + 15_000;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}
