import { describe, expect, it } from "vitest";
import { SendLimiter } from "../../src/outbox/limiter.js";

describe("SendLimiter after close()", () => {
  it("a request waiting for a slot is told no at once, and no timer is left behind", async () => {
    const limiter = new SendLimiter(1, 60 * 60 * 1000); // one an hour
    const first = await limiter.acquire();
    first!.sent();
    first!.answered(); // the slot is busy for an hour
    const waiting = limiter.acquire();
    limiter.close();
    // Before the fix the waiter re-checked, found no room and re-armed an hour-long timer.
    await expect(
      Promise.race([waiting, new Promise((r) => setTimeout(() => r("still waiting"), 200))]),
    ).resolves.toBeNull();
    expect(limiter.pendingTimers()).toBe(0);
    await expect(limiter.acquire()).resolves.toBeNull();
  });

  it("seeded answers count against the window (a restart remembers what was sent)", async () => {
    let now = 1_000_000;
    const limiter = new SendLimiter(2, 20_000, () => now);
    limiter.seed([5_000, 10_000]); // answered 5 s and 10 s ago
    let got = false;
    const p = limiter.acquire().then((s) => {
      got = true;
      return s;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(got).toBe(false); // both slots taken by the seeded answers
    now += 10_001; // the older one (10 s ago) has left the 20 s window
    limiter.close(); // release the waiter; it must now see room... or be told no after close
    expect(await p).toBeNull();
    const again = new SendLimiter(2, 20_000, () => now);
    again.seed([15_000, 30_000]);
    expect(await again.acquire()).not.toBeNull(); // one of the two is older than the window
  });
});
