/**
 * A sliding-window rate limiter over the instants requests are actually sent. p-queue's
 * interval limits when tasks *start*; an attempt does database work before its request, and on
 * a busy (or embedded, serialised) database that delay varies, so sends could bunch into one
 * window. Here a slot is reserved first and its time recorded when the request goes out: at any
 * instant, sends in the last `windowMs` plus reserved slots never exceed `cap`.
 */
export class SendLimiter {
  readonly #sent: number[] = []; // send times, oldest first, at most `cap` kept
  #reserved = 0;
  readonly #waiters: (() => void)[] = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly cap: number,
    private readonly windowMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Waits for room; then exactly one of `commit()` (the request is going out now) or `cancel()`. */
  async acquire(): Promise<{ commit(): void; cancel(): void }> {
    while (!this.#hasRoom()) await new Promise<void>((r) => this.#wait(r));
    this.#reserved++;
    if (this.#hasRoom()) this.#wakeOne(); // room for the next waiter too
    let done = false;
    const finish = (sent: boolean) => {
      if (done) return;
      done = true;
      this.#reserved--;
      if (sent) {
        this.#sent.push(this.now());
        if (this.#sent.length > this.cap) this.#sent.shift();
      }
      this.#wakeOne();
    };
    return { commit: () => finish(true), cancel: () => finish(false) };
  }

  #hasRoom(): boolean {
    const since = this.now() - this.windowMs;
    while (this.#sent.length && this.#sent[0]! <= since) this.#sent.shift();
    return this.#sent.length + this.#reserved < this.cap;
  }

  #wait(resolve: () => void): void {
    this.#waiters.push(resolve);
    // Room also appears when the oldest send leaves the window.
    if (!this.#timer && this.#sent.length) {
      const at = this.#sent[0]! + this.windowMs - this.now() + 1;
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

  /** Releases every waiter (they re-check and wait again unless the caller stopped). */
  clear(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#waiters.splice(0)) w();
  }
}
