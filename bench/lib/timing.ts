import { readFile } from "node:fs/promises";
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
  /** CPU time in ms: this process (the sender, and the bench's receiver), PostgreSQL's backends. */
  cpu?: { processMs: number; serverMs: number | null };
  /** Items (messages) the run handled, for the CPU per item. */
  items?: number;
};

export type Busy = { count: number; meanMs: number; busyShare: number };

/** Wall time with at least one span open, and the spans' count and total. */
export class BusyClock {
  #open = 0;
  #since = 0;
  #busy = 0;
  #count = 0;
  #total = 0;
  /** Per kind of span (a statement's name or first words): count and total ms. */
  readonly kinds = new Map<string, { count: number; totalMs: number }>();

  start(): number {
    const now = performance.now();
    if (this.#open++ === 0) this.#since = now;
    return now;
  }

  end(startedAt: number, kind?: string): void {
    const now = performance.now();
    this.#count++;
    this.#total += now - startedAt;
    if (kind !== undefined) {
      const k = this.kinds.get(kind) ?? { count: 0, totalMs: 0 };
      k.count++;
      k.totalMs += now - startedAt;
      this.kinds.set(kind, k);
    }
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
    this.kinds.clear();
    if (this.#open) this.#since = performance.now();
  }
}

/** `db` with every query and transaction (one span, begin to commit) timed on `clock`. */
export function timedDb(db: Db, clock: BusyClock): Db {
  const timed = async <T>(fn: () => Promise<T>, kind: string) => {
    const at = clock.start();
    try {
      return await fn();
    } finally {
      clock.end(at, kind);
    }
  };
  // the options too: the engine's named (prepared) statements must stay prepared when timed
  const query: Queryable["query"] = (text, values, opts) =>
    timed(() => db.query(text, values, opts), opts?.name ?? statementKind(text));
  return {
    kind: db.kind,
    query,
    tx: (fn, opts) => timed(() => db.tx(fn, opts), "transaction"),
    ...(db.listen ? { listen: db.listen.bind(db) } : {}),
    close: () => db.close(),
  };
}

/** A statement without a name, for the per-kind breakdown: its first words. */
const statementKind = (text: string) => text.replace(/\s+/g, " ").trim().slice(0, 48);

/** The per-kind breakdown of a clock, largest total first (BENCH_DB_STATEMENTS=1). */
export function describeKinds(clock: BusyClock, items: number): string {
  return [...clock.kinds.entries()]
    .sort((a, b) => b[1].totalMs - a[1].totalMs)
    .map(
      ([k, v]) =>
        `    ${k}: ${v.count} × ${(v.totalMs / v.count).toFixed(2)} ms (${((1000 * v.count) / items).toFixed(1)} per 1,000 messages)`,
    )
    .join("\n");
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

/**
 * CPU time of the PostgreSQL backends connected to `db`'s database (pg-boss's too, when it uses
 * the same database), read from /proc: the server runs on this host. What one message costs the
 * server, beside what it costs this process, is what says how far two cores can go (#16).
 * Backends that exit during the run are not counted (the pools keep theirs for 10 s idle). `stop`
 * resolves to null where /proc cannot be read (another host, another OS).
 */
export async function serverCpu(db: Queryable): Promise<{ stop(): Promise<number | null> }> {
  const read = async () => {
    const { rows } = await db.query<{ pid: number }>(
      "select pid from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
    );
    const cpu = new Map<number, number>();
    for (const { pid } of rows) {
      // fields after "(comm)": state is the 1st, utime the 12th, stime the 13th (clock ticks)
      const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => null);
      const f = stat?.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (f) cpu.set(pid, (Number(f[11]) + Number(f[12])) * TICK_MS);
    }
    return cpu;
  };
  const before = await read().catch(() => null);
  return {
    async stop() {
      const after = await read().catch(() => null);
      if (!before || !after || after.size === 0) return null;
      let ms = 0;
      for (const [pid, t] of after) ms += t - (before.get(pid) ?? 0);
      return ms;
    },
  };
}

/** Linux's clock tick (USER_HZ) is 100 per second on every common build. */
const TICK_MS = 10;

/** This process's CPU (user + system) since `from` (process.cpuUsage()), in ms. */
export const cpuSince = (from: NodeJS.CpuUsage) => {
  const d = process.cpuUsage(from);
  return (d.user + d.system) / 1000;
};

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
    b.cpu && b.items ? cpuPerItem(b.cpu, b.items) : "",
  ]
    .filter(Boolean)
    .join(", ");
}

/** CPU per message, in µs: where two cores go. */
function cpuPerItem(cpu: NonNullable<Breakdown["cpu"]>, items: number): string {
  const us = (x: number) => `${Math.round((1000 * x) / items)} µs`;
  const server = cpu.serverMs === null ? "" : `, PostgreSQL ${us(cpu.serverMs)}`;
  return `CPU per message: this process ${us(cpu.processMs)}${server}`;
}
