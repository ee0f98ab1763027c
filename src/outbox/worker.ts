import PQueue from "p-queue";
import { type Clock, waitAtMost } from "../clock.js";
import type { Db } from "../db/db.js";
import type { Logger } from "../log.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { answeredBy } from "./answer.js";
import type { AttemptRecord } from "./outcome.js";
import type { SharedBatches } from "./batches.js";
import { backlogHead, backlogHeadMeta, backlogPayloadAfter, type DeliveryRow } from "./queries.js";
import { prepareRequest } from "../formats/events.js";
import { runJob } from "../jobs/run.js";
import { SendLimiter, type Slot } from "./limiter.js";
import { type AttemptResult, type Decision, decide, isDelivered } from "./retry.js";
import type { OutboundRequest, SendResult, Sender, Staged } from "./send.js";

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
  /** The engine's status reads, last checks and outcome records, shared by its workers. */
  batches: SharedBatches;
  /** For how long (ms, from now) this process's lease on a subscription is certainly valid. */
  leaseLeft: (subscription: string) => number;
  /** How far `clock` may be behind the database's (see answer.ts). */
  clockErrorMs: () => number;
  /** Observers (metrics, tests). */
  onAttempt?: (sub: Subscription, row: DeliveryRow, outcome: string, durationMs: number) => void;
};

const RETRY_PUMP_MS = 1000;
/**
 * A row fetched with the last checks (status, lease, still owed) may start without checking
 * again for this long; one that waited longer in the queue (a slow receiver, a rate limit) is
 * checked again just before its request. The in-memory status and lease are checked every time.
 */
const CHECK_FRESH_MS = 100;
/**
 * Rows held per request slot (see #target). Four, read when half are left: each read of the
 * backlog fetches ~2 × concurrency rows while a full round of requests still waits in the queue
 * (#16: two per slot made 29 reads per 1,000 messages, competing with the records for the
 * database's commits). Those that wait past CHECK_FRESH_MS are checked again before they start.
 */
export const TARGET_PER_SLOT = 4;
const INTERRUPTED = "interrupted: stock-sync stopped sending for this subscription (shutdown_grace ended)";
/** After the grace, aborted requests get this long to have their outcome recorded. */
const RECORD_AFTER_ABORT_MS = 5000;

/** fifo's head as read, and whether it passed the last checks with that read. */
type FifoHead = { head: DeliveryRow; checked: boolean };
/** The status and fifo's head; null: the head is read again (#fifoHead beside a record). */
type FifoRead = [status: string | undefined, head: FifoHead | undefined | null];

/**
 * Sends one subscription's backlog while this process holds its lease: a p-queue gives the
 * concurrency, the SendLimiter the rate limit, the ordering decides what may start; outcomes
 * are recorded by group commit.
 */
export class SubscriptionWorker {
  readonly #queue: PQueue;
  /** The rate limit, applied to the instant each request goes out (see limiter.ts). */
  readonly #limiter: SendLimiter | null;
  /** Deliveries taken from the backlog and not yet recorded: never fetched again meanwhile. */
  readonly #inFlight = new Set<number>();
  /**
   * Aborts the requests on the wire when the shutdown grace ends (their outcome is still
   * recorded). One for all of them: a controller per request cost ~3% of the sender's CPU (#16).
   */
  readonly #abort = new AbortController();
  /** Of those, the ones answered and waiting for their outcome to be recorded (since when). */
  readonly #recording = new Map<Promise<void>, number>();
  /** Since when the current read of the backlog runs (performance.now()), if one does. */
  #pumpSince: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #pumping = false;
  #again = false;
  #stopped = false;
  /** The subscription's status as last read (every pump; a pause wakes the worker). */
  #enabled = true;
  /** After a database failure nothing new starts before this time (no hot loop of re-sends). */
  #backoffUntil = 0;
  /** After a refused check (#refused): no new read before then, unless woken from outside. */
  #refusedUntil = 0;
  /** The receiver asked for a pause (429/503 with Retry-After): nothing starts before this time. */
  #holdUntil = 0;
  /** fifo: the message behind the one being sent, with its payload, read meanwhile (see #fifoHead). */
  #ahead: Promise<DeliveryRow | undefined> | null = null;
  /** fifo: the read of the message behind the one being staged, started with the staging. */
  #aheadOfStaged: { afterId: number; read: Promise<DeliveryRow | undefined> } | null = null;
  /** fifo: the message behind the one being sent, uploaded meanwhile without being published. */
  #staged: Promise<{ id: number; staged: Staged } | null> | null = null;
  /** fifo: an abandoned staging still ending: nothing is sent before it has (same temporary name). */
  #abandoning: Promise<void> | null = null;
  /** fifo: when the head last read passed the last checks with its read (-Infinity: it did not). */
  #fifoCheckedAt = Number.NEGATIVE_INFINITY;
  /**
   * fifo: the next head's read, made while the success of delivery `afterId` is recorded
   * (#readBeside); `written` once that outcome is.
   */
  #beside: { afterId: number; askedAt: number; written: boolean; read: Promise<FifoRead> } | null = null;
  /** Aborts stagings when the shutdown grace ends (like #requests). */
  readonly #stagingAbort = new AbortController();

  constructor(
    readonly sub: Subscription,
    private readonly deps: WorkerDeps,
  ) {
    this.#queue = new PQueue({ concurrency: sub.ordering === "fifo" ? 1 : sub.concurrency });
    const limit = sub.rate_limit;
    this.#limiter = limit ? new SendLimiter(limit.requests, limit.per) : null;
  }

  /** Answers sent before this worker existed (ages in ms): they count against the rate limit. */
  seedRateLimit(agesMs: readonly number[]): void {
    this.#limiter?.seed(agesMs);
  }

  get inFlight(): number {
    return this.#inFlight.size;
  }

  /**
   * Look for due work now (new messages, a resume, the engine's poll, a timer). Coalesces bursts.
   * Something changed outside, so a refused head is read and checked again at once.
   */
  wake(): void {
    this.#refusedUntil = 0;
    this.#beside = null; // (a pause, say) read after it, not before
    this.#look();
  }

  /** wake() from within: a finished attempt, which leaves a refused head's wait in place. */
  #look(): void {
    if (this.#stopped) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    void this.#pump().finally(() => {
      this.#pumping = false;
      this.#pumpSince = undefined;
    });
  }

  /**
   * How long this worker has been waiting on the database (a read of the backlog, or an outcome
   * to record), in ms; 0 when it is not. The engine renews the lease only of a worker that is
   * not stuck: a hung connection must hand the subscription over, not hold it for ever.
   */
  stalledMs(): number {
    const since = Math.min(this.#pumpSince ?? Number.POSITIVE_INFINITY, ...this.#recording.values());
    return Number.isFinite(since) ? performance.now() - since : 0;
  }

  async #pump(): Promise<void> {
    do {
      this.#again = false;
      this.#pumpSince = performance.now();
      // One turn of the event loop per read of the backlog. Attempts that need no I/O (an event
      // its body.template cannot render) on an in-process database (PGlite, the embedded default)
      // otherwise chain read → attempt → record → read in promise callbacks alone: no timer (the
      // lease's renewal), request or signal ran until the whole due backlog had failed.
      await new Promise<void>((resolve) => setImmediate(resolve));
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
    const { clock } = this.deps;
    const now = clock.now();
    if (now.getTime() < this.#backoffUntil) return this.#wakeAt(this.#backoffUntil);
    if (now.getTime() < this.#refusedUntil) return this.#wakeAt(this.#refusedUntil);
    if (now.getTime() < this.#holdUntil) return this.#wakeAt(this.#holdUntil);
    const rows = await this.#due(now);
    // fifo's head passed the checks with its read (from `now`) or is checked before it starts
    const checkedAt = this.sub.ordering === "fifo" ? this.#fifoCheckedAt : now.getTime();
    if (!this.#enabled || this.#stopped) return;
    for (const row of rows) {
      this.#inFlight.add(row.id);
      void this.#queue.add(() => this.#attempt(row, checkedAt)).catch(() => undefined);
    }
  }

  /**
   * What may start now under this subscription's ordering; sets a timer for what is not due yet.
   * Reads the subscription's status too (a pause wakes the worker, which reads it here).
   */
  async #due(now: Date): Promise<DeliveryRow[]> {
    if (this.sub.ordering === "fifo") return this.#fifo(now);
    const room = this.#room();
    if (room <= 0) {
      this.#enabled = (await this.deps.batches.status(this.sub.name)) === "enabled";
      return [];
    }
    // status, due rows (with the last checks) and the next due time in one read (shared with
    // the other subscriptions reading theirs at the same time)
    const due = await this.deps.batches.due({
      subscription: this.sub.name,
      ordering: this.sub.ordering,
      limit: room,
      skip: [...this.#inFlight],
      forMs: this.sub.timeout,
    });
    this.#enabled = due.status === "enabled";
    if (due.rows.length < room && due.nextDueAt) this.#wakeAt(due.nextDueAt.getTime());
    return due.rows;
  }

  /**
   * fifo: the head of the backlog, when nothing is in flight and it is due. The status and the
   * head are read together (one round trip less between two parts, issue 13).
   */
  async #fifo(at: Date): Promise<DeliveryRow[]> {
    this.#fifoCheckedAt = Number.NEGATIVE_INFINITY;
    let now = at;
    // An abandoned staging (a pause) ends before the head is read and checked, not inside the
    // head's attempt: the attempt's last checks promise its lease for one timeout from its start,
    // and the wait (the staging's upload, then its removal) can take two.
    if (this.#abandoning) {
      this.#beside = null;
      await this.#abandoning;
      now = this.deps.clock.now();
    }
    const idle = !this.#stopped && this.#inFlight.size === 0;
    // the read made beside the record before this (#readBeside), if it could tell the head
    const beside = idle ? this.#takeBeside() : null;
    const early = beside && (await beside.read.catch(() => null));
    const used = early && early[1] !== null ? { read: early, askedAt: beside!.askedAt } : null;
    const [status, read] =
      used?.read ??
      (await Promise.all([this.deps.batches.status(this.sub.name), idle ? this.#fifoHead() : undefined]));
    // the checks count from when they were asked
    const checkedFrom = used ? used.askedAt : now.getTime();
    this.#enabled = status === "enabled";
    if (!this.#enabled) this.#abandonStaged(); // paused: nothing staged waits on the server
    if (!this.#enabled || this.#stopped || this.#inFlight.size > 0 || !read) return [];
    const { head, checked } = read;
    // A staging that is not the head's (the part before it is owed again: its record was lost, a
    // replay) is abandoned and has ended before the head is checked, as a paused one (above).
    const staged = this.#staged && (await this.#staged.catch(() => null));
    if (staged && staged.id !== head.id) {
      this.#abandonStaged();
      return this.#fifo(this.deps.clock.now()); // read again after the wait, which can be long
    }
    if (checked) this.#fifoCheckedAt = checkedFrom;
    if (head.next_attempt_at > now) {
      this.#wakeAt(head.next_attempt_at.getTime());
      return [];
    }
    const prefetched = this.#aheadOfStaged;
    this.#aheadOfStaged = null;
    this.#ahead =
      prefetched?.afterId === head.id
        ? prefetched.read
        : backlogPayloadAfter(this.deps.db, this.sub.name, head.id);
    this.#ahead.catch(() => undefined); // a failed read ahead only means reading it whole later
    return [head];
  }

  /**
   * fifo's head. While it is sent, the next message's payload is read (a stock part is a
   * megabyte: reading it took longer than uploading it over SFTP, issue 13), so the head after
   * this one is read without it (#fifo starts the read ahead when a head goes out). A message's
   * payload never changes; the row itself (status, attempts, lease checks) is always read fresh,
   * and a head that is not the message read ahead (a failed attempt, a replay) is read whole.
   * Beside a record (`without`: #readBeside), such a head gives null: it is read once the record
   * is in.
   */
  async #fifoHead(without?: number): Promise<FifoHead | undefined | null> {
    const { db } = this.deps;
    const ahead = this.#ahead && (await this.#ahead.catch(() => undefined));
    // (a read beside a record leaves it for the read after, should its answer not be used)
    if (without === undefined) this.#ahead = null;
    if (ahead) {
      const lease = { owner: this.deps.owner, forMs: this.sub.timeout };
      const [meta] = await backlogHeadMeta(db, this.sub.name, lease, without);
      if (!meta) return undefined;
      if (meta.message_id === ahead.message_id) {
        const { sendable, ...row } = meta;
        return { head: { ...row, payload: ahead.payload }, checked: sendable === true };
      }
    }
    if (without !== undefined) return null; // read whole once the record is in
    const [head] = await backlogHead(db, this.sub.name);
    return head && { head, checked: false };
  }

  /**
   * fifo: starts reading the next head (status, head and last checks) beside the record of
   * delivery `afterId`'s success rather than after it: a round trip less between two messages,
   * ~6 ms a stock part here (issue 13). #fifo uses that read only once the success is written
   * (not fenced: the lease moved, or it is no longer owed; no error) and if nothing woke the
   * worker from outside meanwhile (a pause); the head read leaves `afterId` out, as the record
   * takes it out of the backlog. Nothing is sent before the record is in either way.
   */
  #readBeside(afterId: number): void {
    const askedAt = this.deps.clock.now().getTime();
    const read = Promise.all([this.deps.batches.status(this.sub.name), this.#fifoHead(afterId)]);
    read.catch(() => undefined);
    this.#beside = { afterId, askedAt, written: false, read };
  }

  /** The read made beside the record before, if that record was written; dropped either way. */
  #takeBeside(): { askedAt: number; read: Promise<FifoRead> } | null {
    const beside = this.#beside;
    this.#beside = null;
    return beside?.written ? beside : null;
  }

  /** Queue only what can start soon, so a pause or a lost lease leaves little queued. */
  #room(): number {
    return Math.max(0, this.#target() - this.#queued());
  }

  /** Taken and not answered yet (queued or sending); those being recorded no longer count. */
  #queued(): number {
    return this.#inFlight.size - this.#recording.size;
  }

  /**
   * How many to hold queued or sending: enough that the requests keep going while the next read
   * of the backlog runs (one read per half of it), few enough that a pause, a lost lease or large
   * payloads (stock parts) leave little in memory; with a rate limit, no more than one window.
   */
  #target(): number {
    const perWindow = this.sub.rate_limit?.requests ?? Number.POSITIVE_INFINITY;
    return Math.max(1, Math.min(this.sub.concurrency * TARGET_PER_SLOT, perWindow + this.sub.concurrency));
  }

  /**
   * Whether a finished attempt should look for more work: only once half of what was queued has
   * gone, so that one read of the backlog fetches many rows instead of one per finished attempt.
   */
  #wantsMore(): boolean {
    return this.#queued() <= Math.floor(this.#target() / 2);
  }

  /**
   * One attempt, as a p-queue task: the last checks and the request. The outcome is recorded
   * after the task ends, so the next request can start meanwhile; the delivery stays in
   * #inFlight (never fetched again, and under `key` ordering it still blocks its key) until its
   * outcome is committed. Under `fifo` the next one must know this outcome, so the task waits.
   */
  async #attempt(row: DeliveryRow, checkedAt: number): Promise<void> {
    const { clock } = this.deps;
    let recording: Promise<void> | undefined;
    try {
      if (this.#stopped) return;
      const outcome = await this.#send(row, checkedAt);
      if (!outcome) return;
      const { at: startedAt, answered, sent, interrupted } = outcome;
      const decidedAt = clock.now();
      // Aborted by our own shutdown: owed again at once (the next owner sends it; this record
      // is written before our lease is released, so the two attempts never overlap).
      const { decision, result }: { decision: Decision; result: AttemptResult } = interrupted
        ? {
            decision: { kind: "retry", delayMs: 0 },
            result: { kind: "error", errorClass: "other", message: INTERRUPTED },
          }
        : {
            decision: decide(
              sent.result,
              row.attempts + 1,
              this.sub.retry_intervals,
              decidedAt,
              this.deps.random,
            ),
            result: sent.result,
          };
      // A receiver asking us to wait is asked nothing more by this subscription until then (the
      // database keeps it for every process: outcome.ts throttle()).
      if (decision.kind === "retry" && decision.throttled)
        this.#holdUntil = Math.max(this.#holdUntil, decidedAt.getTime() + decision.delayMs);
      const rec = {
        deliveryId: row.id,
        startedAt,
        durationMs: sent.durationMs,
        answeredBy: answered,
        result,
        responseBody: sent.responseBody,
        decision,
        decidedAt,
      };
      if (this.sub.ordering === "fifo" && decision.kind === "delivered" && !this.#abandoning)
        this.#readBeside(row.id);
      recording = this.#record(row, rec);
      // Under fifo the next request needs this outcome. Otherwise at most `concurrency` answered
      // attempts wait for their record outside a slot, so what a crash can leave sent but not
      // recorded (and send again) stays under twice the concurrency.
      if (this.sub.ordering === "fifo" || this.#recording.size > this.sub.concurrency) await recording;
    } catch (err) {
      // The last check could not be made (state database down?): the delivery stays owed.
      this.deps.log.warn({ err, subscription: this.sub.name, delivery: row.id }, "delivery attempt not made");
      this.#backoffUntil = clock.now().getTime() + RETRY_PUMP_MS;
    } finally {
      if (!recording) this.#done(row.id);
    }
  }

  #record(row: DeliveryRow, rec: AttemptRecord): Promise<void> {
    let fenced = false;
    const recording = (async () => {
      try {
        const { wake, outcome } = await this.deps.batches.record(this.sub, rec, (ids) => {
          fenced = true;
          this.#fenced(ids);
        });
        const beside = this.#beside;
        if (beside?.afterId === row.id && outcome === "delivered" && !fenced) beside.written = true;
        this.deps.onAttempt?.(this.sub, row, outcome, rec.durationMs);
        if (wake.length) this.deps.wake(wake);
      } catch (err) {
        // Not recorded (state database down?): the delivery stays owed and is sent again later.
        this.deps.log.warn(
          { err, subscription: this.sub.name, delivery: row.id },
          "delivery attempt not recorded",
        );
        this.#backoffUntil = this.deps.clock.now().getTime() + RETRY_PUMP_MS;
      }
    })();
    this.#recording.set(recording, performance.now());
    return recording.finally(() => {
      this.#recording.delete(recording);
      this.#done(row.id);
    });
  }

  #fenced(ids: number[]): void {
    this.deps.log.warn(
      { subscription: this.sub.name, deliveries: ids },
      "attempt outcome not written: the delivery is no longer owed or the lease moved to another process",
    );
  }

  #done(id: number): void {
    this.#inFlight.delete(id);
    if (this.#wantsMore()) this.#look();
  }

  /**
   * The last checks, then the request. In the database, unless they were made (with the fetch,
   * or here) less than CHECK_FRESH_MS ago: the delivery is still owed, the subscription enabled
   * and our lease good for the whole request, so a pause committed by any process stops every
   * request that would start later than that. Then the rate slot, the database checks again if
   * the wait made them stale, and the status and lease in memory (a pause wakes this worker,
   * which re-reads the status), so the slot covers only the request.
   */
  async #send(row: DeliveryRow, fetchedAt: number) {
    const { clock } = this.deps;
    const now = () => clock.now().getTime();
    let checkedAt = fetchedAt;
    // true when the database checks were made (from the moment they were asked) a moment ago
    const recheck = async () => {
      if (now() - checkedAt <= CHECK_FRESH_MS) return true;
      checkedAt = now();
      // The lease must outlast the whole request of the last one to start.
      return this.deps.batches.check(row.id, this.sub.timeout);
    };
    if (this.#stopped) return null;
    if (!(await recheck())) return this.#refused();
    const slot = this.#limiter ? await this.#limiter.acquire() : undefined;
    if (slot === null) return null; // the limiter was closed: stopping
    let go: boolean | "refused" = false;
    try {
      // The wait for a rate slot can be long: check again, holding the slot. (A throttle's hold
      // needs no back-off: #fill waits for it.)
      if (!this.#stopped && now() >= this.#holdUntil)
        go = (!slot || (await recheck())) && this.#stillOurs() ? true : "refused";
    } finally {
      if (go !== true) slot?.cancel();
    }
    if (go === "refused") return this.#refused();
    if (!go) return null;
    slot?.sent();
    // the answer time recorded counts from here: the preparation of the request is part of it
    const started = performance.now();
    const at = clock.now();
    const clockError = this.deps.clockErrorMs();
    const abort = this.#abort;
    try {
      // an order event's body.template is applied here, so the signature covers what is sent
      const preparing = prepareRequest(this.sub, row, at);
      const prepared = preparing instanceof Promise ? await preparing : preparing;
      const sent =
        "failed" in prepared
          ? { result: prepared.failed, responseBody: null, durationMs: 0 }
          : this.sub.job
            ? // an import job (issue 15): the attempt lasts until the OMS applied it; null = cut short
              await runJob({
                ...this.deps,
                sub: this.sub,
                row,
                request: prepared.request,
                signal: abort.signal,
                mayGoOn: () => this.#stillOurs(),
                stillOwed: () => this.deps.batches.check(row.id, this.sub.timeout),
                takeSlot: this.#jobSlots(slot),
              })
            : await this.#sendOrPublish(row, { ...prepared.request, signal: abort.signal });
      if (!sent) return null;
      const answered = answeredBy(at, performance.now() - started, clockError);
      return { at, answered, sent, interrupted: abort.signal.aborted };
    } finally {
      slot?.answered();
    }
  }

  /**
   * The request, or the publication of this very message if it was staged; under fifo, where the
   * destination can stage (sftp://), the message behind it is uploaded meanwhile (issue 13).
   * Ordering as an importer sees it is what becomes visible in the folder, and a staged message
   * becomes visible only here, as the head's attempt: after every outcome before it is recorded,
   * with the same last checks, rate slot and attempt record as any request. A head that is not the
   * staged message (the one before it failed, a replay) has the staging abandoned first.
   */
  async #sendOrPublish(row: DeliveryRow, req: OutboundRequest): Promise<SendResult> {
    const { sender } = this.deps;
    const staged = this.#staged || this.#abandoning ? await this.#takeStaged(row.id) : null;
    const sending = staged ? staged.publish(req) : sender.send(req);
    // only sftp:// destinations stage (other schemes would prepare each message twice for nothing)
    if (this.sub.ordering === "fifo" && this.sub.sftp && sender.stage) this.#stageNext(sending);
    return sending;
  }

  /** The staging of delivery `id` if there is one; any other is abandoned (and has ended). */
  async #takeStaged(id: number): Promise<Staged | null> {
    const pending = this.#staged;
    this.#staged = null;
    await this.#abandoning;
    const s = await pending?.catch(() => null);
    if (s?.id === id) return s.staged;
    if (s) await s.staged.abandon(this.#mayRemove());
    return null;
  }

  /**
   * Starts staging the message read ahead (the one behind the message going out now) once that
   * one is in place (`after` succeeded): behind a failure nothing goes up, and the upload does
   * not queue in front of the rename on the connection. The staging overlaps the record of the
   * message before it and the reads before its own turn. Reads the message behind it meanwhile.
   */
  #stageNext(after: Promise<SendResult>): void {
    const ahead = this.#ahead;
    if (!ahead) return;
    const stage = this.deps.sender.stage!;
    this.#staged = (async () => {
      const { result } = await after;
      if (!isDelivered(result)) return null;
      const next = await ahead;
      if (!next || !this.#stillOurs()) return null;
      const prepared = await prepareRequest(this.sub, next, this.deps.clock.now());
      if ("failed" in prepared) return null;
      const staged = await stage({ ...prepared.request, signal: this.#stagingAbort.signal });
      if (!staged) return null;
      const read = backlogPayloadAfter(this.deps.db, this.sub.name, next.id);
      read.catch(() => undefined);
      this.#aheadOfStaged = { afterId: next.id, read };
      return { id: next.id, staged };
    })().catch(() => null);
  }

  /** Drops the staging, if any, in the background; the next send waits until it has ended. */
  #abandonStaged(): void {
    const pending = this.#staged;
    if (!pending) return;
    this.#staged = null;
    this.#aheadOfStaged = null;
    const previous = this.#abandoning;
    const abandoning = (async () => {
      await previous;
      const s = await pending.catch(() => null);
      await s?.staged.abandon(this.#mayRemove());
    })().catch(() => undefined);
    this.#abandoning = abandoning;
    void abandoning.finally(() => {
      if (this.#abandoning === abandoning) this.#abandoning = null;
    });
  }

  /**
   * Whether an abandoned staging's temporary file may be removed: only while our lease certainly
   * holds. Once it may have moved, another process may be uploading the same message under the
   * same temporary name; what we left is then overwritten by that upload (or the next one).
   */
  #mayRemove(): boolean {
    return !this.#stagingAbort.signal.aborted && this.#leaseHolds();
  }

  /** An import job's rate slots: this attempt's (already sent) for its first request, then new ones. */
  #jobSlots(first: Slot | undefined): () => Promise<Slot | undefined | null> {
    let own = first;
    return async () => {
      if (own) {
        const s = own;
        own = undefined;
        return { sent: () => {}, answered: () => s.answered(), cancel: () => s.answered() };
      }
      return this.#limiter ? this.#limiter.acquire() : undefined;
    };
  }

  /**
   * A delivery the checks refused (in the database: no longer owed, paused, the lease moved or too
   * short; or the lease as this process knows it too short) is not sent, and the worker reads and
   * checks again only when woken from outside (a resume, new messages, the engine's poll) or
   * after RETRY_PUMP_MS: its own finished attempt changes nothing. Read again at once, fifo's head
   * was checked in a loop: a busy loop on PostgreSQL until the next renewal, and on PGlite, where
   * each turn is promise callbacks only, one that never let a timer (the renewal's) run again.
   */
  #refused(): null {
    this.#refusedUntil = this.deps.clock.now().getTime() + RETRY_PUMP_MS;
    return null;
  }

  /** In memory: not stopping, enabled, and our lease good for a whole request more. */
  #stillOurs(): boolean {
    return !this.#stopped && this.#enabled && this.#leaseHolds();
  }

  /** Our lease, as this process knows it, good for a whole request (the timeout) more. */
  #leaseHolds(): boolean {
    return this.deps.leaseLeft(this.sub.name) > this.sub.timeout;
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

  /**
   * Stops starting attempts and waits up to `graceMs` for those in flight; then aborts what is
   * still on the wire and waits (briefly) for every outcome to be recorded. Only then may the
   * caller release the lease: another process must never send a message while an attempt of it
   * is still in flight here, nor see a late outcome of ours undo its own.
   */
  async stop(graceMs: number): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#queue.clear();
    this.#limiter?.close();
    const idle = () =>
      this.#queue.onIdle().then(async () => {
        while (this.#recording.size) await Promise.all(this.#recording.keys());
        // a staging is ended too: the next owner uploads the same message under the same name
        this.#abandonStaged();
        await this.#abandoning;
      });
    await waitAtMost(idle(), graceMs);
    this.#abort.abort();
    this.#stagingAbort.abort();
    await waitAtMost(idle(), RECORD_AFTER_ABORT_MS);
  }
}
