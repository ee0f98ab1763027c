import { afterEach, describe, expect, it, vi } from "vitest";
import { SendLimiter } from "../../src/outbox/limiter.js";
import { maxInWindow } from "../helpers/cleanup.js";

describe("SendLimiter", () => {
  it("never lets more than cap arrivals into any window, however late between send and answer they arrive", async () => {
    const limiter = new SendLimiter(5, 100);
    const sent: number[] = [];
    const worker = async () => {
      for (let i = 0; i < 5; i++) {
        const slot = (await limiter.acquire())!;
        await new Promise((r) => setTimeout(r, Math.random() * 20)); // work between reserve and send
        slot.sent();
        // The receiver sees it at some point before the response: here, at a random point.
        const flight = Math.random() * 30;
        await new Promise((r) => setTimeout(r, flight * Math.random()));
        sent.push(Date.now());
        await new Promise((r) => setTimeout(r, flight));
        slot.answered();
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    expect(sent).toHaveLength(20);
    expect(maxInWindow(sent, 100)).toBeLessThanOrEqual(5);
  });

  it("a cancelled reservation frees its slot at once; a sent one only a window after its answer", async () => {
    // A clock that only moves when the test says: nothing here waits for time to pass.
    let now = 0;
    const limiter = new SendLimiter(1, 10_000, () => now);
    const settled = async <T>(p: Promise<T>) => {
      const none = Symbol("pending");
      for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
      return Promise.race([p, Promise.resolve(none)]).then((v) => (v === none ? "pending" : "granted"));
    };
    (await limiter.acquire())!.cancel();
    const slot = limiter.acquire();
    expect(await settled(slot)).toBe("granted");
    (await slot)!.sent();
    (await slot)!.answered();
    const next = limiter.acquire();
    expect(await settled(next)).toBe("pending"); // the window after the answer has not passed
    now = 10_001;
    limiter.clear(); // waiters look again (instead of its 10 s timer)
    expect(await settled(next)).toBe("granted");
  });

  describe("on a stepped clock", () => {
    const WINDOW = 10_000;
    let now = 0;
    const settled = async <T>(p: Promise<T>) => {
      const none = Symbol("pending");
      for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
      return Promise.race([p, Promise.resolve(none)]).then((v) => (v === none ? "pending" : "granted"));
    };
    /** How many of `n` acquisitions are granted at once (the others stay waiting, then closed). */
    const room = async (limiter: SendLimiter, n: number) => {
      const got = await Promise.all(Array.from({ length: n }, () => settled(limiter.acquire())));
      limiter.close();
      return got.filter((g) => g === "granted").length;
    };

    it("a slot counts once, whatever is called twice or out of order", async () => {
      now = 0;
      // cancel twice
      let limiter = new SendLimiter(1, WINDOW, () => now);
      let slot = (await limiter.acquire())!;
      slot.cancel();
      slot.cancel();
      expect(await room(limiter, 2)).toBe(1);
      // answered twice: one answer in the window, then none
      limiter = new SendLimiter(2, WINDOW, () => now);
      slot = (await limiter.acquire())!;
      slot.sent();
      slot.answered();
      slot.answered();
      now += WINDOW + 1;
      expect(await room(limiter, 3)).toBe(2);
      // sent and answered after a cancel: nothing to count
      limiter = new SendLimiter(1, WINDOW, () => now);
      slot = (await limiter.acquire())!;
      slot.cancel();
      slot.sent();
      slot.answered();
      now += WINDOW + 1;
      expect(await room(limiter, 2)).toBe(1);
    });

    it("waiters are served in the order they came: a reservation that leaves no room wakes nobody else", async () => {
      now = 0;
      const order: string[] = [];
      const take = (name: string, limiter: SendLimiter) =>
        limiter.acquire().then((slot) => {
          order.push(name);
          return slot!;
        });
      // cap 1: A, B, C wait behind a reservation; each cancel lets exactly the next one in (a
      // waiter woken without room would queue again behind the later ones)
      const limiter = new SendLimiter(1, WINDOW, () => now);
      const first = (await limiter.acquire())!;
      const [a, b, c] = [take("A", limiter), take("B", limiter), take("C", limiter)];
      first.cancel();
      expect(await settled(a)).toBe("granted");
      (await a).cancel();
      expect(await settled(b)).toBe("granted");
      (await b).cancel();
      expect(await settled(c)).toBe("granted");
      expect(order).toEqual(["A", "B", "C"]);
      limiter.close();
    });

    it("an answer exactly one window old no longer counts", async () => {
      now = 0;
      const limiter = new SendLimiter(1, WINDOW, () => now);
      const slot = (await limiter.acquire())!;
      slot.sent();
      slot.answered();
      now = WINDOW - 1;
      const next = limiter.acquire();
      expect(await settled(next)).toBe("pending");
      now = WINDOW; // answered at 0: exactly one window ago
      limiter.clear();
      expect(await settled(next)).toBe("granted");
      limiter.close();
    });
  });

  describe("its own timer (fake timers and the clock they move)", () => {
    const WINDOW = 10_000;
    afterEach(() => {
      vi.useRealTimers();
    });
    const fake = () => vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "Date"], now: 0 });
    const settled = async <T>(p: Promise<T>) => {
      const none = Symbol("pending");
      for (let i = 0; i < 10; i++) await new Promise((r) => setImmediate(r));
      return Promise.race([p, Promise.resolve(none)]).then((v) => (v === none ? "pending" : "granted"));
    };

    it("wakes a waiter 1 ms after the oldest answer leaves the window, and one wake-up lets in as many as there is room for", async () => {
      fake();
      const limiter = new SendLimiter(2, WINDOW, () => Date.now());
      for (const slot of [(await limiter.acquire())!, (await limiter.acquire())!]) {
        slot.sent();
        slot.answered(); // both at 0
      }
      const d = limiter.acquire();
      const e = limiter.acquire();
      expect(vi.getTimerCount()).toBe(1); // one timer, however many wait
      await vi.advanceTimersByTimeAsync(WINDOW);
      expect(await settled(d)).toBe("pending");
      await vi.advanceTimersByTimeAsync(1);
      expect(await settled(d)).toBe("granted");
      expect(await settled(e)).toBe("granted");
      limiter.close();
      expect(vi.getTimerCount()).toBe(0);
    });

    it("sets no timer while what fills the window is not answered yet", async () => {
      fake();
      const limiter = new SendLimiter(1, WINDOW, () => Date.now());
      const slot = (await limiter.acquire())!;
      slot.sent(); // in flight: room comes back with its answer, not with time
      const next = limiter.acquire();
      expect(await settled(next)).toBe("pending");
      expect(vi.getTimerCount()).toBe(0);
      slot.answered();
      await vi.advanceTimersByTimeAsync(WINDOW + 1);
      expect(await settled(next)).toBe("granted");
      limiter.close();
    });
  });
});
