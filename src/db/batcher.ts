/**
 * Group commit without a timer: items submitted while a batch is running go together into the
 * next one, so under load one statement (and one fsync) serves many callers, and an idle caller
 * waits for nothing but its own round trip. One batch runs at a time.
 */
export class Batcher<In, Out> {
  #pending: { item: In; resolve: (out: Out) => void; reject: (err: unknown) => void }[] = [];
  #running = false;
  /** Batches run so far (tests and metrics: how much grouping happened). */
  batches = 0;

  /**
   * @param run gets the items in submission order and returns one result per item, in order;
   *   when it throws, every item of the batch is rejected with that error.
   * @param max the most items in one batch (the rest wait for the next).
   */
  constructor(
    private readonly run: (items: In[]) => Promise<Out[]>,
    private readonly max = 500,
  ) {
    if (!(max >= 1)) throw new TypeError(`Batcher max must be at least 1, got ${max}`);
  }

  submit(item: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      if (!this.#running) void this.#drain();
    });
  }

  async #drain(): Promise<void> {
    this.#running = true;
    try {
      while (this.#pending.length) {
        const batch = this.#pending.splice(0, this.max);
        this.batches++;
        try {
          const out = await this.run(batch.map((b) => b.item));
          if (out.length !== batch.length)
            throw new Error(`batch returned ${out.length} results for ${batch.length} items`);
          for (const [i, b] of batch.entries()) b.resolve(out[i]!);
        } catch (err) {
          for (const b of batch) b.reject(err);
        }
      }
    } finally {
      this.#running = false;
    }
  }
}
