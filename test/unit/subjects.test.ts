import { describe, expect, it } from "vitest";
import { matchesAny, matchesSubject } from "../../src/subscriptions/subjects.ts";

describe("matchesSubject", () => {
  it.each([
    ["stock.full", "stock.full", true],
    ["stock.full", "stock.delta", false],
    ["stock.full", "stock.full.extra", false],
    ["stock.full", "stock", false],
    ["Stock.full", "stock.full", false],
    ["*", "stock.full", true],
    ["*", "order.line.cancelled", true],
    ["*", "x", true],
    ["order.*", "order.created", true],
    ["order.*", "order.line.cancelled", true],
    ["order.*", "order", false],
    ["order.*", "orders.created", false],
    ["order.*", "order.", false],
    ["ops.*", "ops.subscription.failing", true],
    ["stock.*.x", "stock.full.x", true],
    ["stock.*.x", "stock.x", false],
    ["stock.*.x", "stock.a.b.x", false],
    ["stock.*.x", "stock.full.y", false],
    ["*.created", "order.created", true],
    ["*.created", "order.line.created", false],
    ["*.*", "order.created", true],
    ["*.*", "order.line.created", true],
    ["*.*", "order", false],
  ])("%s vs %s → %s", (pattern, subject, expected) => {
    expect(matchesSubject(pattern, subject)).toBe(expected);
  });
});

describe("matchesAny", () => {
  it("matches when one pattern does, and never for an empty list", () => {
    expect(matchesAny(["stock.full", "stock.delta"], "stock.delta")).toBe(true);
    expect(matchesAny(["stock.full", "order.*"], "order.paid")).toBe(true);
    expect(matchesAny(["stock.full", "order.*"], "ops.subscription.failing")).toBe(false);
    expect(matchesAny([], "stock.full")).toBe(false);
  });
});
