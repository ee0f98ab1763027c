import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect } from "vitest";
import type { Db } from "../../src/db/db.js";
import { createExporter } from "../../src/export/exporter.js";
import { installCapture } from "../../src/inventory/capture-catalog.js";
import { DEFAULT_SELLABLE } from "../../src/inventory/queries.js";
import { seedDemoSource } from "../../src/inventory/seed.js";
import { FIXTURES_DIR } from "../../src/app.js";
import { testConfig } from "./engine.js";
import { exportDeps } from "./export-deps.js";
import type { Config } from "../../src/config/index.js";

export { exportDeps };

/** A file:// subscription taking every stock message, so tests can read what was enqueued. */
export const STOCK_SUB = `subscriptions:\n  - name: oms\n    subjects: [stock.full, stock.delta]\n    url: "file:///dev/null/unused"\n`;

// The exporters' temp folders, removed when the test file that made them ends (registered when
// this module is imported, so in that file's root suite).
const tempDirs: string[] = [];
afterAll(async () => {
  await Promise.all(tempDirs.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/**
 * The demo inventory with change capture, in `db` (source = state), and an exporter over it.
 * `seed: false`: neither (the source is there already); `capture: false`: the inventory without
 * change capture (installed later by the test, or never: `full_diff`, a missing install).
 */
export async function stockFixture(
  db: Db,
  yaml = STOCK_SUB,
  opts: { seed?: boolean; capture?: boolean } = {},
) {
  const config = testConfig(yaml);
  if (opts.seed !== false) {
    await seedDemoSource(db, { fixturesDir: FIXTURES_DIR });
    if (opts.capture !== false) await installCapture(db, config.stock.capture);
  }
  const tmp = await mkdtemp(join(tmpdir(), "stock-sync-export-"));
  tempDirs.push(tmp);
  const deps = await exportDeps(db, config, tmp);
  return { config, deps, exporter: createExporter(deps) };
}

/** (Re-)installs the config's change capture on `db`, as `source install --apply` does. */
export async function installDemoCapture(db: Db, config: Config): Promise<void> {
  await installCapture(db, config.stock.capture);
}

/** The sellable stock the source computes right now, key -> quantity. */
export async function sourceTruth(db: Db, sql: string, days = 0): Promise<Map<string, number>> {
  const { rows } = await db.query<{ sku: string; location: string; quantity: number }>(sql, [days]);
  return new Map(rows.map((r) => [`${r.sku}|${r.location}`, Number(r.quantity)]));
}

export type StockMessage = {
  kind: string;
  sequence: number;
  part: string;
  rows: { sku: string; location: string; quantity: number }[];
};

/** Every stock message enqueued for a subscription, in delivery order (sequence). */
export async function stockMessages(
  db: Db,
  subscription = "oms",
  statuses = ["pending", "failed", "delivered", "dead", "superseded"],
): Promise<StockMessage[]> {
  const { rows } = await db.query<{ sequence: number; payload: Uint8Array; headers: Record<string, string> }>(
    `select d.sequence, m.payload, m.headers from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
     where d.subscription = $1 and m.run_id is not null and d.status = any($2::text[]) order by d.sequence`,
    [subscription, statuses],
  );
  return rows.map((r) => ({
    kind: r.headers["stock-sync-kind"]!,
    sequence: Number(r.sequence),
    part: r.headers["stock-sync-part"]!,
    rows: parseCsv(Buffer.from(r.payload).toString("utf8")),
  }));
}

function parseCsv(text: string) {
  const [header, ...lines] = text.trim().split("\n");
  const cols = header!.split(",");
  return lines.filter(Boolean).map((line) => {
    const cells = line.split(",");
    const row = Object.fromEntries(cols.map((c, i) => [c, cells[i]]));
    return { sku: row.sku!, location: row.location!, quantity: Number(row.quantity) };
  });
}

/** What an OMS holds after applying messages in order: a full replaces everything, a delta upserts. */
export function applyToOms(messages: StockMessage[], oms = new Map<string, number>()): Map<string, number> {
  let pendingFull: Map<string, number> | null = null;
  for (const m of messages) {
    if (m.kind === "full") {
      const [i, n] = m.part.split("/").map(Number) as [number, number];
      if (i === 1) pendingFull = new Map();
      for (const r of m.rows) pendingFull!.set(`${r.sku}|${r.location}`, r.quantity);
      if (i === n) {
        oms.clear();
        for (const [k, v] of pendingFull!) oms.set(k, v);
        pendingFull = null;
      }
    } else {
      for (const r of m.rows) oms.set(`${r.sku}|${r.location}`, r.quantity);
    }
  }
  // Zeros and absent keys mean the same to the OMS.
  for (const [k, v] of oms) if (v === 0) oms.delete(k);
  return oms;
}

export const withoutZeros = (m: Map<string, number>) => new Map([...m].filter(([, v]) => v !== 0));

/**
 * Nothing was missed: what the OMS holds after every stock message so far (full + deltas applied
 * in order, zeros dropped) equals the sellable stock the source computes now.
 */
export async function expectOmsEqualsSource(db: Db): Promise<void> {
  expect(applyToOms(await stockMessages(db))).toEqual(withoutZeros(await sourceTruth(db, DEFAULT_SELLABLE)));
}
