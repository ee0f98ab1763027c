import { describe, expect, it } from "vitest";
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

  it("a cancelled reservation frees its slot at once", async () => {
    const limiter = new SendLimiter(1, 10_000);
    (await limiter.acquire())!.cancel();
    const started = Date.now();
    const slot = (await limiter.acquire())!;
    slot.sent();
    slot.answered();
    expect(Date.now() - started).toBeLessThan(50);
  });
});
