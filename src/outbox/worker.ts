import PQueue from "p-queue";
import type { Clock } from "../clock.js";
import type { Db } from "../db/db.js";
import type { Logger } from "../log.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { recordOutcome } from "./outcome.js";
import {
  backlogHead,
  type DeliveryRow,
  dueAny,
  dueKeyHeads,
  mayAttempt,
  nextDueAt,
  subscriptionStatuses,
} from "./queries.js";
import { buildRequest } from "./request.js";
import { SendLimiter } from "./limiter.js";
import { decide } from "./retry.js";
import type { Sender } from "./send.js";

export type WorkerDeps = {
  db: Db;
  clock: Clock;
  log: Logger;
  sender: Sender;
  random: () => number;
  owner: string;
  all: readonly Subscription[];
  notifyMinIntervalMs: number;
  /** Wake other subscriptions (a notification was enqueued for them). */
  wake: (names: string[]) => void;
  /** Until when (local clock, ms) this process's lease on a subscription is certainly valid. */
  leaseUntil: (subscription: string) => number;
  /** Observers (metrics, tests). */
  onAttempt?: (sub: Subscription, row: DeliveryRow, outcome: string, durationMs: number) => void;
};

const RETRY_PUMP_MS = 1000;
// Recording an outcome is retried briefly: each give-up means the message is sent again later.
const RECORD_RETRIES_MS = [100, 500, 1500];

async function withRetries<T>(fn: () => Promise<T>): Promise<T> {
  for (const delay of RECORD_RETRIES_MS) {
    try {
      return await fn();
    } catch {
      await new Promise((r) => setTimeout(r, delay));
    }
  }
  return fn();
}

/**
 * Sends one subscription's backlog while this process holds its lease: a p-queue gives the
 * concurrency and the rate limit (sliding window), the ordering decides what may start.
 */
export class SubscriptionWorker {
  readonly #queue: PQueue;
  /** The rate limit, applied to the instant each request goes out (see limiter.ts). */
  readonly #limiter: SendLimiter | null;
  readonly #inFlight = new Set<number>();
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #pumping = false;
  #again = false;
  #stopped = false;
  /** The subscription's status as last read (every pump; a pause wakes the worker). */
  #enabled = true;
  /** After a database failure nothing new starts before this time (no hot loop of re-sends). */
  #backoffUntil = 0;

  constructor(
    readonly sub: Subscription,
    private readonly deps: WorkerDeps,
  ) {
    this.#queue = new PQueue({ concurrency: sub.ordering === "fifo" ? 1 : sub.concurrency });
    const limit = sub.rate_limit;
    // The margin absorbs the jitter between recording a send and its arrival (event loop, network).
    this.#limiter = limit ? new SendLimiter(limit.requests, limit.per) : null;
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /** Look for due work now (new messages, a resume, a finished attempt). Coalesces bursts. */
  wake(): void {
    if (this.#stopped) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    void this.#pump().finally(() => {
      this.#pumping = false;
    });
  }

  async #pump(): Promise<void> {
    do {
      this.#again = false;
      try {
        await this.#fill();
      } catch (err) {
        this.deps.log.warn(
          { err, subscription: this.sub.name },
          "delivery worker could not read its backlog",
        );
        this.#backoffUntil = this.deps.clock.now().getTime() + RETRY_PUMP_MS;
        this.#wakeAt(this.#backoffUntil);
        return;
      }
    } while (this.#again && !this.#stopped);
  }

  async #fill(): Promise<void> {
    const { db, clock } = this.deps;
    const now = clock.now();
    if (now.getTime() < this.#backoffUntil) return this.#wakeAt(this.#backoffUntil);
    const status = (await subscriptionStatuses(db, [this.sub.name])).get(this.sub.name);
    this.#enabled = status === "enabled";
    if (!this.#enabled || this.#stopped) return;
    const rows = await this.#due(now);
    for (const row of rows) {
      this.#inFlight.add(row.id);
      void this.#queue.add(() => this.#attempt(row)).catch(() => undefined);
    }
  }

  /** What may start now under this subscription's ordering; sets a timer for what is not due yet. */
  async #due(now: Date): Promise<DeliveryRow[]> {
    const { db } = this.deps;
    if (this.sub.ordering === "fifo") {
      if (this.#inFlight.size > 0) return [];
      const [head] = await backlogHead(db, this.sub.name);
      if (!head) return [];
      if (head.next_attempt_at > now) {
        this.#wakeAt(head.next_attempt_at.getTime());
        return [];
      }
      return [head];
    }
    const room = this.#room();
    if (room <= 0) return [];
    const skip = [...this.#inFlight];
    const rows =
      this.sub.ordering === "key"
        ? await dueKeyHeads(db, this.sub.name, now, room, skip)
        : await dueAny(db, this.sub.name, now, room, skip);
    if (rows.length < room) {
      const next = await nextDueAt(db, this.sub.name, now);
      if (next) this.#wakeAt(next.getTime());
    }
    return rows;
  }

  /** Queue only what can start soon, so a pause or a lost lease leaves little queued. */
  #room(): number {
    const perWindow = this.sub.rate_limit?.requests ?? Number.POSITIVE_INFINITY;
    const target = Math.min(this.sub.concurrency * 2, perWindow + this.sub.concurrency);
    return Math.max(0, Math.max(target, 1) - this.#inFlight.size);
  }

  async #attempt(row: DeliveryRow): Promise<void> {
    const { db, clock } = this.deps;
    try {
      if (this.#stopped) return;
      const outcome = await this.#send(row);
      if (!outcome) return;
      const { at: startedAt, sent } = outcome;
      const now = clock.now();
      const decision = decide(sent.result, row.attempts + 1, this.sub.retry_intervals, now, this.deps.random);
      const wake = await withRetries(() =>
        db.tx((tx) =>
          recordOutcome(
            tx,
            {
              deliveryId: row.id,
              startedAt,
              durationMs: sent.durationMs,
              result: sent.result,
              responseBody: sent.responseBody,
              decision,
            },
            {
              subscription: this.sub,
              all: this.deps.all,
              now,
              notifyMinIntervalMs: this.deps.notifyMinIntervalMs,
            },
          ),
        ),
      );
      this.deps.onAttempt?.(this.sub, row, decision.kind, sent.durationMs);
      if (wake.length) this.deps.wake(wake);
    } catch (err) {
      // Not recorded (state database down?): the delivery stays owed and is sent again later.
      this.deps.log.warn(
        { err, subscription: this.sub.name, delivery: row.id },
        "delivery attempt not recorded",
      );
      this.#backoffUntil = clock.now().getTime() + RETRY_PUMP_MS;
    } finally {
      this.#inFlight.delete(row.id);
      this.wake();
    }
  }

  /**
   * The last checks, then the request. In the database: the delivery is still owed, the
   * subscription enabled and our lease good for the whole request, so a pause committed by any
   * process stops what has not started. Then the rate slot; while waiting for it the status and
   * lease are re-checked in memory (a pause wakes this worker), so the slot covers only the request.
   */
  async #send(row: DeliveryRow) {
    const { db, clock, sender, owner } = this.deps;
    const leaseNeeded = () => clock.now().getTime() + this.sub.timeout;
    if (this.#stopped || !(await mayAttempt(db, row.id, owner, new Date(leaseNeeded())))) return null;
    const slot = await this.#limiter?.acquire();
    if (slot && (this.#stopped || !this.#enabled || this.deps.leaseUntil(this.sub.name) <= leaseNeeded())) {
      slot.cancel();
      return null;
    }
    slot?.sent();
    const at = clock.now();
    try {
      return { at, sent: await sender.send(buildRequest(this.sub, row, at)) };
    } finally {
      slot?.answered();
    }
  }

  #wakeAt(at: number): void {
    if (this.#stopped || at >= this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(
      () => {
        this.#timerAt = Number.POSITIVE_INFINITY;
        this.wake();
      },
      Math.max(0, at - this.deps.clock.now().getTime()),
    );
  }

  /** Stops starting attempts; waits up to `graceMs` for those in flight. */
  async stop(graceMs: number): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#queue.clear();
    this.#limiter?.clear();
    const idle = this.#queue.onIdle();
    await Promise.race([idle, new Promise((r) => setTimeout(r, graceMs).unref())]);
  }
}
