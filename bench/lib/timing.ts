import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import type { Db, Queryable } from "../../src/db/db.js";

/**
 * Where one measured run's time went, so the next bottleneck shows without a profiler (#16):
 * how long the database and HTTP were busy (wall time with at least one query or request
 * outstanding, as a share of the run), how many of each and their mean, and how busy the event
 * loop was (utilisation) and how late its timers ran (p99 delay).
 */
export type Breakdown = {
  wallMs: number;
  db: Busy | null;
  http: Busy | null;
  loop: { utilization: number; lagP99Ms: number };
};

export type Busy = { count: number; meanMs: number; busyShare: number };

/** Wall time with at least one span open, and the spans' count and total. */
export class BusyClock {
  #open = 0;
  #since = 0;
  #busy = 0;
  #count = 0;
  #total = 0;

  start(): number {
    const now = performance.now();
    if (this.#open++ === 0) this.#since = now;
    return now;
  }

  end(startedAt: number): void {
    const now = performance.now();
    this.#count++;
    this.#total += now - startedAt;
    if (--this.#open === 0) this.#busy += now - this.#since;
  }

  /** A span measured elsewhere (a request's duration, known when it ends). */
  span(durationMs: number): void {
    this.end(this.start() - durationMs);
  }

  read(wallMs: number): Busy {
    const open = this.#open ? performance.now() - this.#since : 0;
    return {
      count: this.#count,
      meanMs: this.#count ? this.#total / this.#count : 0,
      busyShare: wallMs > 0 ? (this.#busy + open) / wallMs : 0,
    };
  }

  reset(): void {
    this.#busy = 0;
    this.#count = 0;
    this.#total = 0;
    if (this.#open) this.#since = performance.now();
  }
}

/** `db` with every query and transaction (one span, begin to commit) timed on `clock`. */
export function timedDb(db: Db, clock: BusyClock): Db {
  const timed = async <T>(fn: () => Promise<T>) => {
    const at = clock.start();
    try {
      return await fn();
    } finally {
      clock.end(at);
    }
  };
  // the options too: the engine's named (prepared) statements must stay prepared when timed
  const query: Queryable["query"] = (text, values, opts) => timed(() => db.query(text, values, opts));
  return {
    kind: db.kind,
    query,
    tx: (fn, opts) => timed(() => db.tx(fn, opts)),
    ...(db.listen ? { listen: db.listen.bind(db) } : {}),
    close: () => db.close(),
  };
}

/** Starts watching the event loop and the clocks; `stop()` gives the breakdown. */
export function watch(clocks: { db?: BusyClock; http?: BusyClock }) {
  clocks.db?.reset();
  clocks.http?.reset();
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const elu = performance.eventLoopUtilization();
  const started = performance.now();
  return {
    stop(): Breakdown {
      const wallMs = performance.now() - started;
      delay.disable();
      return {
        wallMs,
        db: clocks.db?.read(wallMs) ?? null,
        http: clocks.http?.read(wallMs) ?? null,
        loop: {
          utilization: performance.eventLoopUtilization(elu).utilization,
          lagP99Ms: delay.percentile(99) / 1e6,
        },
      };
    },
  };
}

const pct = (x: number) => `${Math.round(100 * x)}%`;
const ms = (x: number) => (x >= 10 ? x.toFixed(0) : x.toFixed(1));

/** One line per breakdown: the median run's, said plainly. */
export function describe(b: Breakdown): string {
  const busy = (what: string, x: Busy | null) =>
    x ? `${what} busy ${pct(x.busyShare)} (${x.count.toLocaleString("en-US")} × ${ms(x.meanMs)} ms)` : "";
  return [
    busy("database", b.db),
    busy("HTTP", b.http),
    `event loop ${pct(b.loop.utilization)} busy, lag p99 ${ms(b.loop.lagP99Ms)} ms`,
  ]
    .filter(Boolean)
    .join(", ");
}
