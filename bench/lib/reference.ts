import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { FIXTURES_DIR } from "../../src/app.js";
import { loadConfig } from "../../src/config/index.js";
import { createExporter, type Exporter } from "../../src/export/exporter.js";
import { readSourceSnapshot } from "../../src/export/run.js";
import { startRun, writeSourceIdentity, writeWatermark } from "../../src/export/state.js";
import { installCapture } from "../../src/inventory/capture-catalog.js";
import { advanceAndPrune, readCaptureState, sourceIdentity } from "../../src/inventory/capture-consumers.js";
import { DEFAULT_SELLABLE } from "../../src/inventory/queries.js";
import { exportDeps } from "../../test/helpers/export-deps.js";
import { type BenchDb, createBenchDb } from "./db.js";
import { progress } from "./stats.js";

/**
 * The reference inventory (fixtures/inventory/schema.sql, the shipped queries with time
 * candidates) at `keys` stock rows: 20 locations per SKU, one open reservation in ten keys
 * expiring over the next two hours, safety stock on one key in ten, incoming stock on one key in
 * ten spread over 30 days. Left in the state a full leaves (sent state, watermark, capture position).
 */
export const REF_LOCATIONS = 20;

export type ReferenceSource = { bench: BenchDb; keys: number; skus: number; exporter: Exporter };

export async function prepareReference(keys: number): Promise<ReferenceSource> {
  progress(`delta: preparing the reference schema with ${keys.toLocaleString("en-US")} keys`);
  const bench = await createBenchDb(`deltaref${keys}`);
  const { db } = bench;
  const skus = Math.ceil(keys / REF_LOCATIONS);
  await db.query(await readFile(join(FIXTURES_DIR, "schema.sql"), "utf8"));
  await db.query(
    `insert into inventory.items (sku, name) select 'SKU-' || lpad(g::text, 7, '0'), 'item ' || g from generate_series(0, $1::int - 1) g`,
    [skus],
  );
  await db.query(
    `insert into inventory.locations (code, name, kind) select 'LOC-' || lpad(g::text, 3, '0'), 'loc ' || g, 'store' from generate_series(0, ${REF_LOCATIONS - 1}) g`,
  );
  const key = `'SKU-' || lpad((g / ${REF_LOCATIONS})::text, 7, '0'), 'LOC-' || lpad((g % ${REF_LOCATIONS})::text, 3, '0')`;
  await db.query(
    `insert into inventory.stock_on_hand (sku, location, quantity) select ${key}, ((g::int8 * 7919) % 100)::int + 10 from generate_series(0, $1::int - 1) g`,
    [keys],
  );
  await db.query(
    `insert into inventory.reservations (sku, location, quantity, expires_at)
     select ${key}, 1 + g % 3, now() + (g % 7200) * interval '1 second' from generate_series(0, $1::int - 1, 10) g`,
    [keys],
  );
  await db.query(
    `insert into inventory.safety_stock (sku, location, quantity) select ${key}, 2 from generate_series(3, $1::int - 1, 10) g`,
    [keys],
  );
  await db.query(
    `insert into inventory.incoming_stock (sku, location, quantity, expected_on)
     select ${key}, 5, current_date + g % 30 from generate_series(5, $1::int - 1, 10) g`,
    [keys],
  );
  await db.query("vacuum analyze");
  const config = loadConfig(
    `stock:\n  sellable: { include_future_days: 3 }\nsubscriptions:\n  - name: oms\n    subjects: [stock.delta]\n    url: "file://${tmpdir()}/stock-sync-bench-delta-unused"\n`,
    {},
  ).config;
  await installCapture(db, config.stock.capture);
  const deps = await exportDeps(db, config, tmpdir());
  const { snapshot, generation } = await db.tx(async (tx) => {
    const { snapshot, now } = await readSourceSnapshot(tx);
    const runId = await startRun(tx, "full", "bench", "full-bench", now);
    await tx.query(
      `insert into stock_sync.stock_sent (sku, location, quantity, run_id) select sku, location, quantity, $2 from (${DEFAULT_SELLABLE}) s`,
      [config.stock.sellable.include_future_days, runId],
    );
    await writeWatermark(tx, snapshot, now, runId);
    await writeSourceIdentity(tx, await sourceIdentity(tx));
    return { snapshot, generation: (await readCaptureState(tx, config.stock.capture.consumer)).generation };
  });
  await advanceAndPrune(db, config.stock.capture.consumer, snapshot, generation);
  await db.query("vacuum analyze stock_sync.stock_sent");
  return { bench, keys, skus, exporter: createExporter(deps) };
}

export const refSku = (n: number) => `SKU-${String(n).padStart(7, "0")}`;
