import type { Clock } from "../clock.js";
import type { Db } from "../db/db.js";
import type { Logger } from "../log.js";
import { adoptFormerTargetNames } from "../subscriptions/adopt.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { estimateDbClock } from "./answer.js";
import { createSharedBatches } from "./batches.js";
import { fairShare, isDeadLocalOwner, newOwnerId } from "./owners.js";
import {
  acquireLeases,
  forgetEngines,
  heartbeat,
  leaseOwners,
  OUTBOX_CHANNEL,
  recentAnswers,
  releaseLeases,
  syncSubscriptions,
} from "./queries.js";
import { hasPlaceholders } from "../formats/placeholders.js";
import { sftpTarget } from "./request.js";
import { purgeDelivered } from "./retention.js";
import { vacuumChurned } from "./vacuum.js";
import type { Sender } from "./send.js";
import { SubscriptionWorker, type WorkerDeps } from "./worker.js";

export type EngineOptions = {
  subscriptions: readonly Subscription[];
  /** How often to look for work that no wake-up announced (other processes on PGlite). */
  pollIntervalMs: number;
  /** How long a process may hold a subscription without renewing; longer than any request timeout. */
  leaseMs: number;
  shutdownGraceMs: number;
  retentionMs: number;
  notifyMinIntervalMs: number;
  /** How often to look for dead outbox rows that no autovacuum will clear (default 10 s). */
  vacuumCheckMs?: number;
};

export type EngineDeps = {
  db: Db;
  clock: Clock;
  log: Logger;
  sender: Sender;
  random?: () => number;
  onAttempt?: WorkerDeps["onAttempt"];
};

export type DeliveryEngine = {
  readonly owner: string;
  start(): Promise<void>;
  wake(names: readonly string[]): void;
  /** Subscriptions this process is sending for right now. */
  owned(): string[];
  stop(): Promise<void>;
};

const PURGE_EVERY_MS = 60 * 60 * 1000;
const VACUUM_CHECK_MS = 10_000;
/** Rows of processes not seen for this many leases are deleted. */
const FORGET_AFTER_LEASES = 10;

/**
 * Runs a worker for each subscription whose lease this process holds. Leases are renewed every
 * third of their length, only for workers that are not stuck on the database; a process that
 * dies loses them when they expire (or at once, when a process of the same host and PID
 * namespace sees that its pid is gone). Each live process takes a fair share of the
 * subscriptions and hands over the rest (stop, record, release), so the work is spread.
 */
export function createDeliveryEngine(deps: EngineDeps, opts: EngineOptions): DeliveryEngine {
  const owner = newOwnerId();
  const workers = new Map<string, SubscriptionWorker>();
  /** performance.now() until which each lease certainly holds (counted from before the ask). */
  const leaseUntil = new Map<string, number>();
  /** Leases being handed over: the worker is stopping; renewed until it has. */
  const handing = new Map<string, Promise<void>>();
  /**
   * Workers whose lease was not renewed (stalled) or was lost, still stopping: their lease is
   * not taken again (by this process, once it expired) before they have stopped.
   */
  const dropping = new Map<string, Promise<void>>();
  const names = opts.subscriptions.map((s) => s.name);
  const byName = new Map(opts.subscriptions.map((s) => [s.name, s]));
  const timers: NodeJS.Timeout[] = [];
  let unlisten: (() => Promise<void>) | undefined;
  let stopped = false;
  let renewing: Promise<void> = Promise.resolve();

  const wake = (list: readonly string[]) => {
    for (const name of list) workers.get(name)?.wake();
  };

  /**
   * The workers' clock is the database's: due times, lease checks and timers are compared with
   * rows that other processes (other hosts, other clocks) wrote. Measured at every renewal.
   */
  let offsetMs = 0;
  /** How far dbClock may be behind the database's: recorded answer times add it (answer.ts). */
  let offsetErrorMs = 0;
  const dbClock = { now: () => new Date(deps.clock.now().getTime() + offsetMs) };

  // what recording needs, for the workers and for the batches they share
  const recording = {
    db: deps.db,
    clock: dbClock,
    log: deps.log,
    random: deps.random ?? Math.random,
    owner,
    all: opts.subscriptions,
    notifyMinIntervalMs: opts.notifyMinIntervalMs,
  };
  const workerDeps: WorkerDeps = {
    ...recording,
    sender: deps.sender,
    wake,
    batches: createSharedBatches(recording),
    leaseLeft: (name) => (leaseUntil.get(name) ?? 0) - performance.now(),
    clockErrorMs: () => offsetErrorMs,
    onAttempt: deps.onAttempt,
  };

  /** A worker stuck on the database for half a lease proves nothing: its lease is let expire. */
  const alive = (w: SubscriptionWorker) => w.stalledMs() < opts.leaseMs / 2;

  async function startWorker(name: string, unclean: boolean): Promise<void> {
    const sub = byName.get(name)!;
    const worker = new SubscriptionWorker(sub, workerDeps);
    workers.set(name, worker);
    if (sub.rate_limit) {
      // The window is the receiver's: what was sent before this process took the lease counts.
      const { requests, per } = sub.rate_limit;
      // Each recorded answer time is the latest it can have come (answer.ts), so the new window
      // never ends before the receiver's.
      const ages = await recentAnswers(deps.db, name, per + sub.timeout, requests);
      // Taken from a process that did not let go: its last attempts may not be recorded. At most
      // twice its concurrency were (see worker.ts), answered at the latest now.
      const unrecorded = unclean ? Math.min(requests, 2 * sub.concurrency) : 0;
      worker.seedRateLimit([...ages, ...Array<number>(unrecorded).fill(0)]);
    }
    deps.log.debug({ subscription: name, unclean }, "sending for subscription");
    worker.wake();
    // An SFTP connection (loading ssh2, the handshake: 150 ms and more) is opened now, beside the
    // backlog's first read, rather than once the first part is read (issue 13). A URL with
    // {{placeholders}} names its server per message: it connects at its first.
    const sftp = sftpTarget(sub);
    if (sftp && !hasPlaceholders(sub.url)) {
      deps.sender.warm?.({ url: sub.url, sftp, timeoutMs: sub.timeout }).catch(() => undefined);
    }
  }

  function handOver(name: string, worker: SubscriptionWorker, graceMs: number, why: string): void {
    workers.delete(name);
    deps.log.info({ subscription: name, why }, "handing subscription over");
    const done = worker
      .stop(graceMs)
      .then(() => releaseLeases(deps.db, owner, [name]))
      .then(() => undefined)
      .catch((err) => deps.log.warn({ err, subscription: name }, "could not release a lease"))
      .finally(() => handing.delete(name));
    handing.set(name, done);
  }

  async function renewLeases(): Promise<void> {
    if (stopped) return;
    try {
      const dead = (await leaseOwners(deps.db, names)).filter((o) => isDeadLocalOwner(o, owner));
      const before = deps.clock.now().getTime();
      const { live, now } = await heartbeat(deps.db, owner, opts.leaseMs, dead);
      const estimate = estimateDbClock(before, now.getTime(), deps.clock.now().getTime());
      offsetMs = estimate.offsetMs;
      offsetErrorMs = estimate.errorMs;
      const share = fairShare(names.length, live);
      // Over our share (a process joined): hand the extra ones over, gracefully.
      const keep = [...workers.keys()].filter((n) => alive(workers.get(n)!)).sort();
      for (const name of keep.splice(share))
        handOver(name, workers.get(name)!, opts.shutdownGraceMs, "share");
      const renew = [...keep, ...handing.keys()];
      const asked = performance.now();
      const held = await acquireLeases(deps.db, {
        owner,
        renew,
        candidates: names.filter((n) => !workers.has(n) && !handing.has(n) && !dropping.has(n)),
        take: share - keep.length,
        leaseMs: opts.leaseMs,
        deadOwners: dead,
      });
      const heldNames = new Set(held.map((h) => h.name));
      leaseUntil.clear();
      // Counted from before the request, so it never overstates what the database granted.
      for (const name of heldNames) leaseUntil.set(name, asked + opts.leaseMs);
      if (stopped) return;
      for (const h of held) if (h.taken) await startWorker(h.name, h.unclean);
      for (const [name, worker] of workers) {
        if (heldNames.has(name)) continue;
        workers.delete(name);
        deps.log.warn(
          { subscription: name },
          "lease lost or not renewed (worker stalled): stopping; any process may take it once it expires",
        );
        const done = worker
          .stop(0)
          .catch(() => undefined)
          .finally(() => dropping.delete(name));
        dropping.set(name, done);
      }
    } catch (err) {
      // The workers keep their leases until expiry; each attempt re-checks the lease in the database.
      deps.log.warn({ err }, "could not renew subscription leases");
    }
  }

  // One renewal at a time: a slow one must not overlap the next tick's.
  const renew = () => {
    renewing = renewing.then(renewLeases);
    return renewing;
  };
  const every = (ms: number, fn: () => unknown) => timers.push(setInterval(fn, ms).unref());

  return {
    owner,
    async start() {
      const configured = opts.subscriptions.map((s) => ({ name: s.name, status: s.status }));
      await syncSubscriptions(deps.db, configured);
      const adopted = await adoptFormerTargetNames(deps.db, opts.subscriptions);
      if (adopted) deps.log.info({ adopted }, "notifications adopted from targets named the old way");
      await renew();
      every(Math.max(50, Math.floor(opts.leaseMs / 3)), renew);
      every(opts.pollIntervalMs, () => wake([...workers.keys()]));
      every(PURGE_EVERY_MS, () =>
        purgeDelivered(deps.db, deps.clock.now(), opts.retentionMs).catch((err) =>
          deps.log.warn({ err }, "retention purge failed"),
        ),
      );
      let vacuuming = false;
      every(opts.vacuumCheckMs ?? VACUUM_CHECK_MS, async () => {
        if (vacuuming) return;
        vacuuming = true;
        await vacuumChurned(deps.db)
          .then((tables) => tables.length && deps.log.info({ tables }, "outbox vacuumed (no autovacuum)"))
          .catch((err) => deps.log.warn({ err }, "outbox vacuum failed"))
          .finally(() => (vacuuming = false));
      });
      if (deps.db.listen) {
        unlisten = await deps.db
          .listen(OUTBOX_CHANNEL, (payload) => wake(payload.split(",")))
          .catch((err) => {
            deps.log.warn({ err }, "LISTEN unavailable: falling back to polling");
            return undefined;
          });
      }
    },
    wake,
    owned: () => [...workers.keys()],
    async stop() {
      stopped = true;
      for (const t of timers) clearInterval(t);
      await renewing;
      await unlisten?.().catch(() => undefined);
      // Every worker first stops and records what it sent; only then are the leases released.
      await Promise.all([...workers.values()].map((w) => w.stop(opts.shutdownGraceMs)));
      await Promise.all([...handing.values(), ...dropping.values()]);
      workers.clear();
      await releaseLeases(deps.db, owner).catch((err) => deps.log.warn({ err }, "could not release leases"));
      await forgetEngines(deps.db, owner, FORGET_AFTER_LEASES * opts.leaseMs).catch(() => undefined);
    },
  };
}
