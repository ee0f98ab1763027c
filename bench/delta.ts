/**
 * Delta: 1,000 changed keys found through the change-capture triggers, over a 100k-key and a
 * 1M-key table, against a full diff of the same 1M table (one anti-join of the current sellable
 * stock against stock_sync.stock_sent). The goals: the delta's time does not grow with the
 * table (1M ≤ 1.5× 100k) and it beats the full diff ≥ 5×.
 * Then the shipped reference queries (with time candidates) over a 1M-key reference inventory:
 * 1,000 changed keys, and one item deactivated or reactivated, each against the whole sellable
 * query (what an item change used to run).
 */
import { randomInt } from "node:crypto";
import { tmpdir } from "node:os";
import { loadConfig } from "../src/config/index.js";
import { createExporter, type Exporter } from "../src/export/exporter.js";
import { readSourceSnapshot } from "../src/export/run.js";
import { startRun, writeWatermark } from "../src/export/state.js";
import { installCapture } from "../src/inventory/capture-catalog.js";
import { DEFAULT_SELLABLE } from "../src/inventory/queries.js";
import { exportDeps } from "../test/helpers/export-deps.js";
import { type BenchDb, createBenchDb } from "./lib/db.js";
import type { BenchOptions, Row } from "./lib/report.js";
import { prepareReference, REF_LOCATIONS, refSku } from "./lib/reference.js";
import { progress, repeat, summarize } from "./lib/stats.js";
import { createStockTable, locationOf, SELLABLE, STOCK_TABLE, skuOf, stockQueriesYaml } from "./lib/stock.js";

const YAML = `stock:
  capture:
    mode: triggers
    tables: [{ table: ${STOCK_TABLE}, sku: sku, location: location }]
${stockQueriesYaml("  ")}
subscriptions:
  - name: oms
    subjects: [stock.delta]
    url: "file://${tmpdir()}/stock-sync-bench-delta-unused"
`;

/** What changed since the last sent state, computed the way a connector without triggers must. */
export const FULL_DIFF = `
select c.sku, c.location, c.quantity
from (${SELLABLE}) c
left join stock_sync.stock_sent s on s.sku = c.sku and s.location = c.location
where s.quantity is distinct from c.quantity
union all
select s.sku, s.location, 0
from stock_sync.stock_sent s
where s.quantity <> 0 and not exists (select 1 from (${SELLABLE}) c where c.sku = s.sku and c.location = s.location)`;

type Source = { bench: BenchDb; size: number; exporter: Exporter };

export async function run(opts: BenchOptions): Promise<Row[]> {
  return [...(await custom(opts)), ...(await reference(opts))];
}

/** One plain table and its own queries (no time candidates): how a delta scales with the table. */
async function custom(opts: BenchOptions): Promise<Row[]> {
  const [small, large] = opts.quick ? [100, 500] : [100_000, 1_000_000];
  const changes = opts.quick ? 50 : 1_000;
  const sources: Source[] = [];
  try {
    for (const size of [small, large]) sources.push(await prepare(size));
    const [s, l] = sources as [Source, Source];
    // Runs are cheap, so five; the two sizes take turns going first (no order bias).
    const runs = await repeat("delta", { warmups: 1, runs: 5 }, async (i) => {
      await change(s, changes);
      await change(l, changes);
      // the full diff first: it reads the same 1,000 changes the delta is about to send
      const diff = await timed(async () => (await l.bench.db.query(FULL_DIFF, [0])).rows.length);
      const first = i % 2 === 0 ? s : l;
      const atFirst = await timedDelta(first, changes);
      const atSecond = await timedDelta(first === s ? l : s, changes);
      const [atSmall, atLarge] = first === s ? [atFirst, atSecond] : [atSecond, atFirst];
      if (diff.result !== changes)
        throw new Error(`full diff found ${diff.result} rows, expected ${changes}`);
      return { small: atSmall, large: atLarge, diff: diff.ms };
    });
    const large1 = summarize(runs.map((r) => r.large));
    const label = (n: number) =>
      n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n);
    const what = `delta, ${changes.toLocaleString("en-US")} changed keys`;
    const scaling = summarize(runs.map((r) => r.large / r.small));
    const speedup = summarize(runs.map((r) => r.diff / r.large));
    return [
      {
        figure: `${what}, over ${label(large)} vs over ${label(small)}`,
        unit: "ms",
        value: large1,
        baseline: {
          label: `same over ${label(small)}`,
          unit: "ms",
          value: summarize(runs.map((r) => r.small)),
        },
        ratio: scaling,
        goal: "≤ 1.5×",
        met: scaling.median <= 1.5,
      },
      {
        figure: `${what}, over ${label(large)} vs full diff`,
        unit: "ms",
        value: large1,
        baseline: {
          label: `anti-join over ${label(large)}`,
          unit: "ms",
          value: summarize(runs.map((r) => r.diff)),
        },
        ratio: speedup,
        goal: "≥ 5× faster",
        met: speedup.median >= 5,
      },
    ];
  } finally {
    for (const s of sources) await s.bench.drop();
  }
}

/** The shipped queries over the reference schema: a delta of changed keys, and an item-level change. */
async function reference(opts: BenchOptions): Promise<Row[]> {
  const [keys, changes] = opts.quick ? [500, 50] : [1_000_000, 1_000];
  const ref = await prepareReference(keys);
  const { db } = ref.bench;
  const run = async (what: string) => {
    const { ms, result } = await timed(() => ref.exporter.run("delta", { trigger: "bench" }));
    if (result.status !== "enqueued") throw new Error(`reference ${what} delta: ${result.status}`);
    return { ms, rows: result.rows };
  };
  try {
    const runs = await repeat("delta reference", { warmups: 1, runs: 5 }, async () => {
      const picked = new Set<number>();
      while (picked.size < changes) picked.add(randomInt(keys));
      await db.query(
        `update inventory.stock_on_hand b set quantity = b.quantity + 1
         from unnest($1::text[], $2::text[]) as k(sku, location) where b.sku = k.sku and b.location = k.location`,
        [[...picked].map((n) => refSku(Math.floor(n / REF_LOCATIONS))), [...picked].map(refLocation)],
      );
      const keysDelta = await run("changed keys");
      const sku = refSku(randomInt(ref.skus));
      await db.query("update inventory.items set active = not active where sku = $1", [sku]);
      const item = await run("item");
      const whole = await timed(() => db.query(WHOLE_FILTERED, [3, [sku], []]));
      return { keys: keysDelta.ms, item: item.ms, itemRows: item.rows, whole: whole.ms };
    });
    const whole = summarize(runs.map((r) => r.whole));
    const baseline = { label: "whole sellable query, filtered to the item", unit: "ms", value: whole };
    const over = keys >= 1_000_000 ? `${keys / 1_000_000}M` : String(keys);
    const speedup = (k: "keys" | "item") => summarize(runs.map((r) => r.whole / r[k]));
    return [
      {
        figure: `delta, reference queries + time candidates, ${changes.toLocaleString("en-US")} changed keys, over ${over}`,
        unit: "ms",
        value: summarize(runs.map((r) => r.keys)),
        baseline,
        ratio: speedup("keys"),
        goal: "≥ 5× faster",
        met: speedup("keys").median >= 5,
      },
      {
        figure: `delta, reference queries, one item (de)activated (${runs[0]!.itemRows} keys), over ${over}`,
        unit: "ms",
        value: summarize(runs.map((r) => r.item)),
        baseline,
        ratio: speedup("item"),
        goal: "≥ 10× faster",
        met: speedup("item").median >= 10,
      },
    ];
  } finally {
    await ref.bench.drop();
  }
}

/** What an item change ran before sellable_matching: the whole query, filtered afterwards. */
const WHOLE_FILTERED = `select count(*) from (${DEFAULT_SELLABLE}) s where s.sku = any($2::text[]) or s.location = any($3::text[])`;

const refLocation = (n: number) => `LOC-${String(n % REF_LOCATIONS).padStart(3, "0")}`;

/**
 * A source of `size` keys with change capture, in the state a full snapshot leaves: every key
 * in stock_sent and the watermark at the current snapshot. Written with SQL, because a real 1M
 * full costs tens of seconds and is what `full` measures.
 */
async function prepare(size: number): Promise<Source> {
  progress(`delta: preparing ${size.toLocaleString("en-US")} keys`);
  const bench = await createBenchDb(`delta${size}`);
  const { db } = bench;
  await createStockTable(db, size);
  const config = loadConfig(YAML, {}).config;
  await installCapture(db, config.stock.capture);
  const deps = await exportDeps(db, config, tmpdir());
  await db.tx(async (tx) => {
    const { snapshot, now } = await readSourceSnapshot(tx);
    const runId = await startRun(tx, "full", "bench", "full-bench", now);
    await tx.query(
      `insert into stock_sync.stock_sent (sku, location, quantity, run_id) select sku, location, quantity, $1 from ${STOCK_TABLE}`,
      [runId],
    );
    await writeWatermark(tx, snapshot, now, runId);
  });
  await db.query("vacuum analyze stock_sync.stock_sent");
  const exporter = createExporter(deps);
  return { bench, size, exporter };
}

/** `n` distinct random keys get a new quantity, in one transaction (the capture triggers see it). */
async function change(source: Source, n: number): Promise<void> {
  const picked = new Set<number>();
  while (picked.size < n) picked.add(randomInt(source.size));
  const keys = [...picked];
  await source.bench.db.query(
    `update ${STOCK_TABLE} b set quantity = b.quantity + 1
     from unnest($1::text[], $2::text[]) as k(sku, location) where b.sku = k.sku and b.location = k.location`,
    [keys.map(skuOf), keys.map(locationOf)],
  );
}

async function timedDelta(source: Source, expected: number): Promise<number> {
  const { ms, result } = await timed(() => source.exporter.run("delta", { trigger: "bench" }));
  if (result.status !== "enqueued" || result.rows !== expected) {
    throw new Error(
      `delta over ${source.size}: ${result.status}, ${"rows" in result ? result.rows : 0} rows`,
    );
  }
  return ms;
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; result: T }> {
  const started = performance.now();
  const result = await fn();
  return { ms: performance.now() - started, result };
}
