/**
 * The rate limit as a receiver counts it: never more than `cap` requests *arriving* in any window
 * of `windowMs`. A request arrives somewhere between the moment it is sent and the moment its
 * response comes back, and our event loop or the network can delay it arbitrarily in between, so
 * a request occupies a slot from its reservation until a full window after its response. Proof
 * sketch: of the requests arriving in one window, the last one sent was sent before the window
 * ended, when every other one was still in flight or had answered within the last window, so all
 * of them were counted against it. The cost: a slow receiver (latency L) gets at most
 * cap / (window + L). p-queue's interval limits task starts, which gives no such bound.
 */
export class SendLimiter {
  readonly #answered: number[] = []; // response times, oldest first
  #reserved = 0; // waiting for the last checks before sending
  #inFlight = 0; // sent, no response yet
  readonly #waiters: (() => void)[] = [];
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    private readonly cap: number,
    private readonly windowMs: number,
    // Monotonic and finer than a millisecond: Date.now() floors, so a window counted from it can
    // end up to 1 ms early, and a receiver with a finer clock counted cap + 1 (measured).
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Waits for room. Then call `cancel()` if nothing is sent, or `sent()` when the request goes out
   * and `answered()` when its response (or failure) is back. Null once the limiter is closed.
   */
  async acquire(): Promise<Slot | null> {
    while (!this.#closed && !this.#hasRoom()) await new Promise<void>((r) => this.#wait(r));
    if (this.#closed) return null;
    this.#reserved++;
    if (this.#hasRoom()) this.#wakeOne(); // room for the next waiter too
    let state: "reserved" | "sent" | "done" = "reserved";
    return {
      sent: () => {
        if (state !== "reserved") return;
        state = "sent";
        this.#reserved--;
        this.#inFlight++;
      },
      answered: () => {
        if (state !== "sent") return;
        state = "done";
        this.#inFlight--;
        this.#answered.push(this.now());
        if (this.#answered.length > this.cap) this.#answered.shift();
        this.#wakeOne();
      },
      cancel: () => {
        if (state !== "reserved") return;
        state = "done";
        this.#reserved--;
        this.#wakeOne();
      },
    };
  }

  #hasRoom(): boolean {
    const since = this.now() - this.windowMs;
    while (this.#answered.length && this.#answered[0]! <= since) this.#answered.shift();
    return this.#answered.length + this.#reserved + this.#inFlight < this.cap;
  }

  #wait(resolve: () => void): void {
    this.#waiters.push(resolve);
    // Room also appears when the oldest answer leaves the window.
    if (!this.#timer && this.#answered.length) {
      const at = this.#answered[0]! + this.windowMs - this.now() + 1;
      this.#timer = setTimeout(
        () => {
          this.#timer = undefined;
          this.#wakeOne();
        },
        Math.max(1, at),
      );
    }
  }

  #wakeOne(): void {
    const next = this.#waiters.shift();
    if (next) next();
  }

  /**
   * Answers that happened before this limiter existed (another process's, or before a restart),
   * as their ages in ms: the window is a promise to the receiver, not to this process.
   */
  seed(agesMs: readonly number[]): void {
    const now = this.now();
    for (const age of agesMs) this.#answered.push(now - age);
    this.#answered.sort((a, b) => a - b);
    while (this.#answered.length > this.cap) this.#answered.shift();
  }

  /** Wakes every waiter to look for room again (after the clock moved, in tests). */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#waiters.splice(0)) w();
  }

  /**
   * Stops the limiter for good: every waiter, now and later, gets null at once, and no timer is
   * left (a re-armed waiter kept a stopped process alive for a whole window: hours with per: 1h).
   */
  close(): void {
    this.#closed = true;
    this.clear();
  }

  /** For tests: timers still armed (0 after close). */
  pendingTimers(): number {
    return this.#timer ? 1 : 0;
  }
}

export type Slot = { sent(): void; answered(): void; cancel(): void };
