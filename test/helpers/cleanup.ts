import { afterEach } from "vitest";
import { type Receiver, startReceiver } from "./receiver.js";

/**
 * Things a test started (engines, receivers, servers), closed after each test, newest first.
 * Call once at the top of a test file.
 */
export function useCleanup() {
  const cleanup: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const fn of cleanup.splice(0).reverse()) await fn();
  });
  return {
    cleanup,
    /** A receiver closed after the test. */
    async receiver(...args: Parameters<typeof startReceiver>): Promise<Receiver> {
      const r = await startReceiver(...args);
      cleanup.push(() => r.close());
      return r;
    },
  };
}

/** The largest number of timestamps inside any window of `ms` (sliding over sorted times). */
export function maxInWindow(times: readonly number[], ms: number): number {
  let best = 0;
  let start = 0;
  for (let end = 0; end < times.length; end++) {
    while (times[end]! - times[start]! >= ms) start++;
    best = Math.max(best, end - start + 1);
  }
  return best;
}
