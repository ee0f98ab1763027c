import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, onTestFinished } from "vitest";
import { type Receiver, startReceiver } from "./receiver.js";

/**
 * Runs every step, newest first, even when one fails (a failed close must not leave the next
 * engine running into the following test); then throws what failed, all of it.
 */
export async function runCleanup(steps: (() => Promise<unknown> | unknown)[]): Promise<void> {
  const errors: unknown[] = [];
  for (const fn of steps.splice(0).reverse()) {
    try {
      await fn();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, `${errors.length} cleanup steps failed`);
}

/**
 * Things a test started (engines, receivers, servers), closed after each test, newest first,
 * every one even when another fails. Call once at the top of a test file.
 */
export function useCleanup() {
  const cleanup: (() => Promise<unknown> | unknown)[] = [];
  afterEach(() => runCleanup(cleanup));
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

/** A temporary folder for the running test, removed when the test ends (passed or failed). */
export async function testDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}
