import { describe, expect, it } from "vitest";
import type { Skipped } from "../../src/export/exporter.js";
import { afterFullAttempt, fullOverdueAfterMs, fullPeriodMs } from "../../src/scheduler/full-due.js";
import { fullResult } from "../helpers/run-result.js";

const skipped = (reason: Skipped["reason"]): Skipped => ({
  kind: "full",
  status: "skipped",
  reason,
  detail: `why ${reason}`,
});

describe("a due full: what to do after an attempt", () => {
  it("done when it was enqueued here, or sent by another process", () => {
    expect(afterFullAttempt(fullResult("enqueued"))).toEqual({ kind: "done" });
    expect(afterFullAttempt(skipped("done"))).toEqual({ kind: "done" });
  });

  it("waits (no retry, no notice) while a run holds the lock here or elsewhere", () => {
    expect(afterFullAttempt(skipped("busy"))).toEqual({ kind: "wait", on: "busy", detail: "why busy" });
    expect(afterFullAttempt(skipped("locked"))).toEqual({ kind: "wait", on: "locked", detail: "why locked" });
  });

  it("retries an error or a failed run and notifies; a refusal (already notified by the guard) without a notice", () => {
    expect(afterFullAttempt({ error: new Error("boom") })).toEqual({
      kind: "retry",
      detail: "boom",
      notify: true,
    });
    expect(afterFullAttempt(fullResult("failed", "source down"))).toEqual({
      kind: "retry",
      detail: "ended failed: source down",
      notify: true,
    });
    expect(afterFullAttempt(fullResult("failed"))).toEqual({
      kind: "retry",
      detail: "ended failed",
      notify: true,
    });
    expect(afterFullAttempt(fullResult("refused", "80% fewer rows"))).toEqual({
      kind: "retry",
      detail: "refused by the shrink guard: 80% fewer rows",
      notify: false,
    });
    expect(afterFullAttempt(fullResult("refused"))).toEqual({
      kind: "retry",
      detail: "refused by the shrink guard: ",
      notify: false,
    });
  });
});

describe("when a full is overdue", () => {
  it("the schedule's longest gap, plus a quarter of it, plus one retry interval", () => {
    expect(fullPeriodMs("0 * * * *")).toBe(3_600_000);
    expect(fullOverdueAfterMs({ full: { schedule: "0 * * * *", retry: 300_000 } } as never)).toBe(
      3_600_000 + 900_000 + 300_000,
    );
    // uneven gaps: the longest counts (03:00 and 05:00 → 22 h)
    expect(fullPeriodMs("0 3,5 * * *")).toBe(22 * 3_600_000);
  });
});
