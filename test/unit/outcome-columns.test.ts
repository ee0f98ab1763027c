import { describe, expect, it } from "vitest";
import { attemptColumns } from "../../src/outbox/outcome.js";
import type { AttemptResult, Decision } from "../../src/outbox/retry.js";

const decidedAt = new Date("2026-11-28T10:00:00.000Z");
const columns = (result: AttemptResult, decision: Decision) =>
  attemptColumns({
    deliveryId: 1,
    startedAt: decidedAt,
    durationMs: 1,
    result,
    responseBody: null,
    decision,
    decidedAt,
  });

describe("the columns an attempt writes", () => {
  it("an error: its class and message, no status", () => {
    expect(
      columns(
        { kind: "error", errorClass: "timeout", message: "no answer" },
        { kind: "retry", delayMs: 1000 },
      ),
    ).toEqual({
      nextAt: new Date(decidedAt.getTime() + 1000),
      status: null,
      error: "timeout: no answer",
      errorClass: "timeout",
    });
  });

  it("a reply: its status, an error from 300 on, no error class", () => {
    expect(columns({ kind: "response", status: 299 }, { kind: "delivered" })).toEqual({
      nextAt: null,
      status: 299,
      error: null,
      errorClass: null,
    });
    expect(columns({ kind: "response", status: 300 }, { kind: "dead" })).toEqual({
      nextAt: null,
      status: 300,
      error: "HTTP 300",
      errorClass: null,
    });
    expect(columns({ kind: "response", status: 410 }, { kind: "gone", delayMs: 5 })).toMatchObject({
      nextAt: new Date(decidedAt.getTime() + 5),
    });
  });
});
