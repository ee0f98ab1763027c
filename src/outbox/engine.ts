import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Clock } from "../clock.js";
import type { Db } from "../db/db.js";
import type { Logger } from "../log.js";
import { adoptFormerTargetNames } from "../subscriptions/adopt.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { acquireLeases, leaseOwners, OUTBOX_CHANNEL, releaseLeases, syncSubscriptions } from "./queries.js";
import { purgeDelivered } from "./retention.js";
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

/**
 * Runs a worker for each subscription whose lease this process holds. Leases are renewed every
 * third of their length; a process that dies loses them when they expire (or at once, when a
 * process on the same host sees that its pid is gone).
 */
export function createDeliveryEngine(deps: EngineDeps, opts: EngineOptions): DeliveryEngine {
  const host = hostname();
  const owner = `${host}:${process.pid}:${randomBytes(3).toString("hex")}`;
  const workers = new Map<string, SubscriptionWorker>();
  const leaseUntil = new Map<string, number>();
  const names = opts.subscriptions.map((s) => s.name);
  const byName = new Map(opts.subscriptions.map((s) => [s.name, s]));
  const timers: NodeJS.Timeout[] = [];
  let unlisten: (() => Promise<void>) | undefined;
  let stopped = false;

  const wake = (list: readonly string[]) => {
    for (const name of list) workers.get(name)?.wake();
  };

  const workerDeps: WorkerDeps = {
    db: deps.db,
    clock: deps.clock,
    log: deps.log,
    sender: deps.sender,
    random: deps.random ?? Math.random,
    owner,
    all: opts.subscriptions,
    notifyMinIntervalMs: opts.notifyMinIntervalMs,
    wake,
    leaseUntil: (name) => leaseUntil.get(name) ?? 0,
    onAttempt: deps.onAttempt,
  };

  async function renewLeases(): Promise<void> {
    if (stopped) return;
    try {
      const dead = (await leaseOwners(deps.db, names)).filter((o) => isDeadLocalOwner(o, host));
      const asked = deps.clock.now();
      const held = new Set(await acquireLeases(deps.db, owner, names, asked, opts.leaseMs, dead));
      leaseUntil.clear();
      // Counted from before the request, so it never overstates what the database granted.
      for (const name of held) leaseUntil.set(name, asked.getTime() + opts.leaseMs);
      if (stopped) return;
      for (const name of held) {
        if (workers.has(name)) continue;
        const worker = new SubscriptionWorker(byName.get(name)!, workerDeps);
        workers.set(name, worker);
        deps.log.debug({ subscription: name }, "sending for subscription");
        worker.wake();
      }
      for (const [name, worker] of workers) {
        if (held.has(name)) continue;
        workers.delete(name);
        deps.log.warn({ subscription: name }, "lease lost: another process sends for this subscription");
        void worker.stop(0);
      }
    } catch (err) {
      // The workers keep their leases until expiry; each attempt re-checks the lease in the database.
      deps.log.warn({ err }, "could not renew subscription leases");
    }
  }

  const every = (ms: number, fn: () => unknown) => timers.push(setInterval(fn, ms).unref());

  return {
    owner,
    async start() {
      const configured = opts.subscriptions.map((s) => ({ name: s.name, status: s.status }));
      await syncSubscriptions(deps.db, configured);
      const adopted = await adoptFormerTargetNames(deps.db, opts.subscriptions);
      if (adopted) deps.log.info({ adopted }, "notifications adopted from targets named the old way");
      await renewLeases();
      every(Math.max(50, Math.floor(opts.leaseMs / 3)), renewLeases);
      every(opts.pollIntervalMs, () => wake([...workers.keys()]));
      every(PURGE_EVERY_MS, () =>
        purgeDelivered(deps.db, deps.clock.now(), opts.retentionMs).catch((err) =>
          deps.log.warn({ err }, "retention purge failed"),
        ),
      );
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
      await unlisten?.().catch(() => undefined);
      await Promise.all([...workers.values()].map((w) => w.stop(opts.shutdownGraceMs)));
      workers.clear();
      await releaseLeases(deps.db, owner).catch((err) => deps.log.warn({ err }, "could not release leases"));
    },
  };
}

/** `host:pid:nonce` of a process on this host that no longer runs. */
function isDeadLocalOwner(owner: string, host: string): boolean {
  const [ownerHost, pid] = owner.split(":");
  if (ownerHost !== host || !pid || Number(pid) === process.pid) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}
