import { Mutex } from "@electric-sql/pglite";

/**
 * PGlite has one backend session. Everyone who uses it (this process's code and every client of
 * the wire-protocol server) must hold this lock for a whole "session cycle": from a first message
 * until the backend is idle again (after Sync or a simple Query, outside a transaction block).
 * A lock per message would let two clients' Parse/Bind or BEGIN…COMMIT interleave.
 */
export class SessionLock {
  readonly #mutex = new Mutex();
  #owner: unknown = null;
  #release: (() => void) | null = null;

  get owner(): unknown {
    return this.#owner;
  }

  /** Waits until `who` owns the session; returns at once if it already does. */
  async acquire(who: unknown): Promise<void> {
    if (this.#owner === who) return;
    const release = await this.#mutex.acquire();
    this.#owner = who;
    this.#release = release;
  }

  release(who: unknown): void {
    if (this.#owner !== who) return;
    const release = this.#release;
    this.#owner = null;
    this.#release = null;
    release?.();
  }

  /** Runs `fn` as a fresh owner: the in-process equivalent of one client's session cycle. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const token = Symbol("in-process");
    await this.acquire(token);
    try {
      return await fn();
    } finally {
      this.release(token);
    }
  }
}
