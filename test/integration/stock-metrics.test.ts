import { expect, it } from "vitest";
import { systemClock } from "../../src/clock.js";
import { createMetrics } from "../../src/metrics/metrics.js";
import { describeEachDb } from "../helpers/db.js";
import { quietLog } from "../helpers/engine.js";
import { stockFixture } from "../helpers/stock.js";

/** One sample of a metric in a Prometheus text exposition, or undefined. */
const sample = (text: string, series: string) => {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describeEachDb("stock metrics from the state database (issue 17.5)", (t) => {
  it("every process reports the last runs, including a CLI run and after a restart", async () => {
    // The runs are made as the CLI makes them: an exporter with no metrics attached.
    const fx = await stockFixture(t().db);
    const full = await fx.exporter.run("full", { trigger: "cli" });
    expect(full.status).toBe("enqueued");
    await t().db.query(
      "update inventory.stock_on_hand set quantity = quantity + 7 where (sku, location) = (select sku, location from inventory.stock_on_hand order by 1, 2 limit 1)",
    );
    const delta = await fx.exporter.run("delta", { trigger: "cli" });
    expect(delta.status).toBe("enqueued");

    // Two processes started afterwards (or restarted): neither saw the runs happen.
    const scrape = async () =>
      (
        await createMetrics(
          { db: t().db, clock: systemClock, log: quietLog },
          { defaultMetrics: false },
        ).scrape()
      ).body;
    const [a, b] = [await scrape(), await scrape()];
    const { rows } = await t().db.query<{ kind: string; at: number; rows: number }>(
      `select distinct on (kind) kind, extract(epoch from finished_at)::float8 as at, rows::int as rows
       from stock_sync.stock_runs where status in ('enqueued', 'empty') order by kind, id desc`,
    );
    for (const text of [a, b]) {
      for (const r of rows) {
        expect(sample(text, `stock_sync_stock_last_run_timestamp_seconds{kind="${r.kind}"}`)).toBeCloseTo(
          r.at,
          2,
        );
        expect(sample(text, `stock_sync_stock_last_run_rows{kind="${r.kind}"}`)).toBe(r.rows);
        expect(
          sample(text, `stock_sync_stock_last_run_duration_seconds{kind="${r.kind}"}`),
        ).toBeGreaterThanOrEqual(0);
      }
      const lag = sample(text, "stock_sync_stock_delta_lag_seconds");
      expect(lag).toBeGreaterThanOrEqual(0);
      expect(lag).toBeLessThan(300);
    }
    expect(rows.map((r) => r.kind).sort()).toEqual(["delta", "full"]);
    expect(sample(a, 'stock_sync_stock_last_run_rows{kind="full"}')).toBe("rows" in full && full.rows);
  });
});
