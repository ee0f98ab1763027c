import { describe, expect, it } from "vitest";
import { assess } from "../../src/outbox/health.js";
import type { Decision } from "../../src/outbox/retry.js";

const retry: Decision = { kind: "retry", delayMs: 1000 };
const f = (before: number, after: number, failingNotified = false) => ({ before, after, failingNotified });

describe("assess (subscription health after one attempt)", () => {
  it("failing once, when the count reaches retries_until_failure (not before, not again after)", () => {
    expect(assess(retry, f(1, 2), 3, false)).toEqual({ deactivate: null, notify: [] });
    expect(assess(retry, f(2, 3), 3, false)).toEqual({ deactivate: null, notify: ["failing"] });
    expect(assess(retry, f(3, 4), 3, false)).toEqual({ deactivate: null, notify: [] });
    // reached in one step from below (a batch of outcomes counted at once)
    expect(assess(retry, f(0, 5), 3, false)).toEqual({ deactivate: null, notify: ["failing"] });
  });

  it("a dead message deactivates, and says failing if it crossed the line too", () => {
    const dead: Decision = { kind: "dead" };
    expect(assess(dead, f(0, 1), 1, false)).toEqual({
      deactivate: "a message exhausted its retries",
      notify: ["failing"],
    });
    expect(assess(dead, f(4, 5), 1, false)).toEqual({
      deactivate: "a message exhausted its retries",
      notify: [],
    });
  });

  it("410 Gone deactivates without a failing notice", () => {
    expect(assess({ kind: "gone", delayMs: 0 }, f(0, 9), 1, false)).toEqual({
      deactivate: "the receiver answered 410 Gone",
      notify: [],
    });
  });

  it("recovered on a success only after a failing notice went out", () => {
    const ok: Decision = { kind: "delivered" };
    expect(assess(ok, f(5, 0, true), 3, false)).toEqual({ deactivate: null, notify: ["recovered"] });
    expect(assess(ok, f(5, 0, false), 3, false)).toEqual({ deactivate: null, notify: [] });
    expect(assess(ok, { before: 5, after: 0 }, 3, false)).toEqual({ deactivate: null, notify: [] });
  });

  it("an internal (notification) subscription raises nothing, whatever happened", () => {
    for (const d of [
      retry,
      { kind: "dead" },
      { kind: "gone", delayMs: 0 },
      { kind: "delivered" },
    ] as Decision[])
      expect(assess(d, f(0, 9, true), 1, true)).toEqual({ deactivate: null, notify: [] });
  });
});
