import { expect, it } from "vitest";
import { runFull } from "../../src/export/snapshot.js";
import { describeEachDb } from "../helpers/db.js";
import { stockFixture } from "../helpers/stock.js";

/**
 * What a full run reports when its publishing transaction fails (docs/testing.md, mutation testing
 * of snapshot.ts): only the guard's own refusal is a refused run; any other error is thrown and
 * the run recorded as failed. Its duration is a duration.
 */
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
