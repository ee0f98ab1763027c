/**
 * Prometheus metrics (SPEC §8), on a registry of their own so several connectors in one process
 * (tests, benchmarks) never share or double-register series. Counters are fed by the code that
 * sees the event; the outbox backlog and the stock runs are read from the state database when
 * /metrics is scraped, so every process (and a restarted one) reports the same values, CLI runs
 * included.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import { lastRejected } from "../jobs/state.js";
import type { Clock } from "../clock.js";
import type { Queryable } from "../db/db.js";
import type { Logger } from "../log.js";
import type { DeliveryRow } from "../outbox/queries.js";
import type { Subscription } from "../subscriptions/subscriptions.js";

export type StockKind = "full" | "delta";

export type Metrics = {
  readonly registry: Registry;
  /** Counts one answered inbound webhook by HTTP status. */
  countInbound(status: number): void;
  /** Records the size of one group-committed batch of inbound events. */
  observeInboundBatch(size: number): void;
  /** Records where one written batch's time went, by phase (ms). */
  observeInboundPhases(phases: Readonly<Record<string, number>>): void;
  /** Shaped like the delivery engine's `onAttempt` hook, so it can be passed as is. */
  observeAttempt(sub: Subscription, row: DeliveryRow, outcome: string, durationMs: number): void;
  /** The text exposition and its content type. */
  scrape(): Promise<{ contentType: string; body: string }>;
};

export type MetricsDeps = { db: Queryable; clock: Clock; log: Logger };

export type MetricsOptions = {
  /** Process metrics (CPU, memory, event loop lag). @default true */
  defaultMetrics?: boolean;
};

const STATES = ["pending", "failed", "dead"] as const;
// From sub-second local deliveries to a message that waited out a whole retry schedule.
const LATENCY_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600];

// 1 when idle; up to the intake's cap of 500 under load
const BATCH_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500];
// a round trip on a local socket to an fsync on a loaded disk
const PHASE_BUCKETS = [0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5];

export function createMetrics(deps: MetricsDeps, opts: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  // Counted in a plain map and handed over at each scrape: a labelled inc (its labels hashed and
  // checked) on every inbound request cost more than the rest of its counting (#16).
  const answered = new Map<number, number>();
  new Counter({
    name: "stock_sync_inbound_requests_total",
    help: "Inbound webhook requests answered, by HTTP status.",
    labelNames: ["status"],
    registers,
    collect() {
      for (const [status, n] of answered) this.inc({ status: String(status) }, n);
      answered.clear();
    },
  });
  const inboundBatch = new Histogram({
    name: "stock_sync_inbound_batch_size",
    help: "Inbound events written together in one statement (group commit).",
    buckets: BATCH_BUCKETS,
    registers,
  });
  const inboundPhases = new Histogram({
    name: "stock_sync_inbound_batch_seconds",
    help: "Where an inbound batch's time goes, by phase: write (statement and commit, one batch in flight); with two, ids_wait (for the previous batch's statement), begin, statement, commit_wait (for the previous batch's commit), commit.",
    labelNames: ["phase"],
    buckets: PHASE_BUCKETS,
    registers,
  });
  const attempts = new Counter({
    name: "stock_sync_delivery_attempts_total",
    help: "Delivery attempts by subscription and outcome (delivered, retry, dead, gone).",
    labelNames: ["subscription", "outcome"],
    registers,
  });
  const latency = new Histogram({
    name: "stock_sync_delivery_latency_seconds",
    help: "Time from enqueue to successful delivery, retries included.",
    labelNames: ["subscription"],
    buckets: LATENCY_BUCKETS,
    registers,
  });
  new Gauge({
    name: "stock_sync_outbox_backlog",
    help: "Deliveries owed, by subscription and state (pending, failed, dead).",
    labelNames: ["subscription", "state"],
    registers,
    async collect() {
      await collectBacklog(this, deps);
    },
  });
  new Gauge({
    name: "stock_sync_import_rejected_records",
    help: "Records the OMS rejected in the subscription's last run whose import jobs finished (job: block).",
    labelNames: ["subscription"],
    registers,
    async collect() {
      this.reset();
      try {
        for (const r of await lastRejected(deps.db)) this.set({ subscription: r.subscription }, r.n);
      } catch (err) {
        deps.log.warn({ err }, "import jobs not measured");
      }
    },
  });
  stockGauges(registers, deps);

  return {
    registry,
    countInbound: (status) => answered.set(status, (answered.get(status) ?? 0) + 1),
    observeInboundBatch: (size) => inboundBatch.observe(size),
    observeInboundPhases(phases) {
      for (const [phase, ms] of Object.entries(phases)) inboundPhases.observe({ phase }, ms / 1000);
    },
    observeAttempt(sub, row, outcome) {
      attempts.inc({ subscription: sub.name, outcome });
      if (outcome !== "delivered") return;
      const seconds = (deps.clock.now().getTime() - row.created_at.getTime()) / 1000;
      latency.observe({ subscription: sub.name }, Math.max(0, seconds));
    },
    async scrape() {
      return { contentType: registry.contentType, body: await registry.metrics() };
    },
  };
}

/**
 * The last successful (enqueued or empty) full and delta, as the state database records them:
 * the shared truth, whichever process or CLI command ran them. Every gauge's collect() shares
 * one query per scrape (prom-client collects them concurrently). The delta lag is measured on
 * the database's clock, so processes with skewed clocks agree.
 */
function stockGauges(registers: Registry[], deps: MetricsDeps) {
  let inflight: Promise<LastStockRun[] | null> | null = null;
  const read = () => {
    inflight ??= lastStockRuns(deps.db)
      .catch((err) => {
        deps.log.warn({ err }, "stock runs not measured");
        return null;
      })
      .finally(() => setImmediate(() => (inflight = null)));
    return inflight;
  };
  const gauge = (name: string, help: string, value: (r: LastStockRun) => number) =>
    new Gauge({
      name: `stock_sync_stock_last_run_${name}`,
      help,
      labelNames: ["kind"],
      registers,
      async collect() {
        const runs = await read();
        this.reset();
        for (const r of runs ?? []) this.set({ kind: r.kind }, value(r));
      },
    });
  gauge("timestamp_seconds", "When the last full or delta run finished (unix seconds).", (r) => r.at);
  gauge("rows", "Rows the last full or delta run exported.", (r) => r.rows);
  gauge("duration_seconds", "How long the last full or delta run took.", (r) => r.duration);
  new Gauge({
    name: "stock_sync_stock_delta_lag_seconds",
    help: "Seconds since the last delta run finished.",
    registers,
    async collect() {
      const delta = (await read())?.find((r) => r.kind === "delta");
      this.reset();
      if (delta) this.set(Math.max(0, delta.age));
    },
  });
}

type LastStockRun = { kind: StockKind; at: number; rows: number; duration: number; age: number };

// distinct on (kind) … order by kind, id desc: one index range per kind (stock_runs_recent)
const lastStockRuns = async (db: Queryable) =>
  (
    await db.query<LastStockRun>(
      `select distinct on (kind) kind, extract(epoch from finished_at)::float8 as at,
              coalesce(rows, 0)::float8 as rows,
              extract(epoch from finished_at - started_at)::float8 as duration,
              extract(epoch from now() - finished_at)::float8 as age
       from stock_sync.stock_runs where status in ('enqueued', 'empty')
       order by kind, id desc`,
    )
  ).rows;

/**
 * One query, one index range per subscription and state, zeros included so a series does not
 * vanish when its backlog drains. A database outage leaves the gauge empty, not stale, and the
 * rest of the scrape still answers.
 */
async function collectBacklog(gauge: Gauge<"subscription" | "state">, deps: MetricsDeps): Promise<void> {
  gauge.reset();
  try {
    for (const row of await backlogCounts(deps.db)) {
      gauge.set({ subscription: row.subscription, state: row.state }, row.n);
    }
  } catch (err) {
    deps.log.warn({ err }, "outbox backlog not measured");
  }
}

const backlogCounts = async (db: Queryable) =>
  (
    await db.query<{ subscription: string; state: string; n: number }>(
      `select s.name as subscription, st.state,
              (select count(*) from stock_sync.deliveries d
               where d.subscription = s.name and d.status = st.state)::int as n
       from stock_sync.subscriptions s cross join unnest($1::text[]) as st(state)`,
      [STATES],
    )
  ).rows;
