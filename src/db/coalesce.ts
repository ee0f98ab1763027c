/**
 * Group commit without a timer: the first item is written at once; items that arrive while a
 * batch is being written wait and go together in the next one. At most one batch is in flight,
 * so under load batches grow by themselves and when idle nothing waits. No I/O here: the
 * caller's `flush` writes a batch and answers each item.
 */

/** Writes a batch; one settled result per item, in order. A rejection fails every item with it. */
export type Flush<I, O> = (items: I[]) => Promise<PromiseSettledResult<O>[]>;

export type CoalescerOptions<I> = {
  /**
   * The most items one batch takes; the rest wait for the next one.
   * @default 500
   * @example createCoalescer(write, { maxBatch: 100 })
   */
  maxBatch?: number;
  /**
   * The most total `weigh` one batch takes, so a few large items cannot make one huge statement;
   * an item heavier than this still goes, alone.
   * @default Infinity
   * @example createCoalescer(write, { weigh: (r) => r.body.length, maxWeight: 8 << 20 })
   */
  maxWeight?: number;
  /** @default () => 0 */
  weigh?: (item: I) => number;
  /**
   * The most batches written at once. A second batch in flight hides one batch's round trip and
   * commit behind the other's; `mayOverlap` says which waiting items may join a batch while
   * others are in flight (the rest wait until none is).
   * @default 1
   */
  inFlight?: number;
  /** Whether `item` may be written while `writing` (the items of the batches in flight) are. */
  mayOverlap?: (item: I, writing: readonly I[]) => boolean;
};

export type CoalescerStats = { batches: number; items: number };

export type Coalescer<I, O> = {
  /** Resolves (or rejects) with the item's own result once its batch is written. */
  submit(item: I): Promise<O>;
  /** Batches flushed and items they held, for metrics and tests. */
  stats(): CoalescerStats;
  /**
   * Starts a batch of what waits, if one may start now: for a `mayOverlap` whose answer changes
   * while batches are in flight (the caller's own state), not only when items come or go.
   */
  poke(): void;
};

type Waiting<I, O> = { item: I; resolve: (value: O) => void; reject: (reason: unknown) => void };

export function createCoalescer<I, O>(flush: Flush<I, O>, opts: CoalescerOptions<I> = {}): Coalescer<I, O> {
  const maxBatch = opts.maxBatch ?? 500;
  if (!Number.isInteger(maxBatch) || maxBatch < 1) {
    throw new RangeError(`maxBatch must be a whole number ≥ 1, got ${maxBatch}`);
  }
  const inFlight = opts.inFlight ?? 1;
  const queue: Waiting<I, O>[] = [];
  const stats: CoalescerStats = { batches: 0, items: 0 };
  /** The batches being written. */
  const writing = new Set<Waiting<I, O>[]>();

  /** The next batch: from the head of the queue, only items that may overlap what is written. */
  function take(): Waiting<I, O>[] {
    if (writing.size === 0) return queue.splice(0, batchLength(queue, maxBatch, opts));
    const busy = [...writing].flat().map((w) => w.item);
    const ok = (w: Waiting<I, O>) => opts.mayOverlap?.(w.item, busy) ?? false;
    // in order, stopping at the first that must wait: nothing overtakes an item of the queue
    let n = 0;
    while (n < queue.length && ok(queue[n]!)) n++;
    return n ? queue.splice(0, batchLength(queue.slice(0, n), maxBatch, opts)) : [];
  }

  /**
   * Writes one batch, if one may start. When it is written, the next batch starts before its
   * items are answered: their answers (an HTTP reply each, for the intake) would otherwise hold
   * the next statement back while they are written (#16). Nothing is answered before its own
   * batch is written, and batches start in the same order as before.
   */
  async function drain(): Promise<void> {
    const batch = writing.size < inFlight && queue.length > 0 ? take() : [];
    if (batch.length === 0) return;
    writing.add(batch);
    stats.batches++;
    stats.items += batch.length;
    let outcome: Outcome<O>;
    try {
      outcome = await write(batch, flush);
    } finally {
      writing.delete(batch);
    }
    // a batch done: room for what waited on it
    startAll();
    answer(batch, outcome);
  }

  /** Starts batches while there is room and something that may go. */
  function startAll(): void {
    while (writing.size < inFlight && queue.length > 0) {
      const before = writing.size;
      void drain(); // takes its batch at once, before its first await
      if (writing.size === before) return; // nothing may go now (mayOverlap)
    }
  }

  return {
    submit(item) {
      const done = new Promise<O>((resolve, reject) => queue.push({ item, resolve, reject }));
      if (writing.size < inFlight) void drain();
      return done;
    },
    stats: () => ({ ...stats }),
    poke: startAll,
  };
}

/** How many of the waiting items the next batch takes: at least one, then within both limits. */
function batchLength<I>(queue: readonly { item: I }[], maxBatch: number, opts: CoalescerOptions<I>): number {
  const maxWeight = opts.maxWeight ?? Number.POSITIVE_INFINITY;
  let weight = opts.weigh?.(queue[0]!.item) ?? 0;
  let n = 1;
  while (n < queue.length && n < maxBatch) {
    weight += opts.weigh?.(queue[n]!.item) ?? 0;
    if (weight > maxWeight) break;
    n++;
  }
  return n;
}

type Outcome<O> = { results: PromiseSettledResult<O>[] } | { error: unknown };

/** A batch's flush, as data: every item's result, or what failed them all (a throw, a miscount). */
async function write<I, O>(batch: Waiting<I, O>[], flush: Flush<I, O>): Promise<Outcome<O>> {
  try {
    const results = await flush(batch.map((w) => w.item));
    if (results.length !== batch.length) {
      throw new Error(`flush answered ${results.length} results for ${batch.length} items`);
    }
    return { results };
  } catch (error) {
    return { error };
  }
}

/** Answers every waiting item of a batch with its outcome. */
function answer<I, O>(batch: Waiting<I, O>[], outcome: Outcome<O>): void {
  if ("error" in outcome) {
    for (const w of batch) w.reject(outcome.error);
    return;
  }
  batch.forEach((w, i) => {
    const r = outcome.results[i]!;
    if (r.status === "fulfilled") w.resolve(r.value);
    else w.reject(r.reason);
  });
}
