/**
 * Failed admin authentications, counted per client address: past `max` failures in `windowMs`
 * the address gets 429 until the window has passed, whatever it sends (so guessing cannot go on
 * at request speed). Every counted failure is logged; refusals while blocked are not (one line
 * per failure up to the limit is enough to see an attack). Pure but for the map it keeps.
 */
import type { Logger } from "../log.js";
import { HttpError } from "./errors.js";

export type AuthThrottle = {
  /** Throws 429 when `ip` is blocked. */
  check(ip: string, now: number): void;
  /** Records a failure (and logs it). */
  fail(ip: string, now: number, where: string): void;
};

const MAX_TRACKED = 10_000;

export function createAuthThrottle(log: Logger, opts = { max: 10, windowMs: 60_000 }): AuthThrottle {
  const failures = new Map<string, number[]>();
  const recent = (ip: string, now: number) => (failures.get(ip) ?? []).filter((t) => now - t < opts.windowMs);
  return {
    check(ip, now) {
      const times = recent(ip, now);
      if (times.length < opts.max) return;
      const wait = Math.ceil((times[0]! + opts.windowMs - now) / 1000);
      throw new HttpError(429, "too_many_failures", "too many failed admin authentications; retry later", {
        "retry-after": String(Math.max(1, wait)),
      });
    },
    fail(ip, now, where) {
      const times = recent(ip, now);
      times.push(now);
      // a flood from many addresses must not grow the map without end: forget the oldest
      if (!failures.has(ip) && failures.size >= MAX_TRACKED) failures.delete(failures.keys().next().value!);
      failures.set(ip, times);
      log.warn({ ip, where, failures: times.length }, "admin authentication failed");
    },
  };
}
