// Issue 17.14: the outage gate's decisions, with the time passed in.
import { describe, expect, it } from "vitest";
import { outageGate } from "../../src/log.ts";

describe("outageGate", () => {
  it("says the outage once, reminds once a minute with the count it kept back, then the recovery", () => {
    const gate = outageGate(60_000);
    expect(gate.recovered(0)).toBeNull(); // nothing to recover from
    expect(gate.failed(1_000)).toEqual({ say: "outage", downMs: 0, suppressed: 0 });
    expect(gate.down).toBe(true);
    for (let t = 1_100; t < 61_000; t += 100) expect(gate.failed(t)).toBeNull();
    expect(gate.failed(61_000)).toEqual({ say: "reminder", downMs: 60_000, suppressed: 599 });
    expect(gate.failed(61_500)).toBeNull();
    expect(gate.recovered(70_000)).toEqual({ say: "recovered", downMs: 69_000, suppressed: 1 });
    expect(gate.down).toBe(false);
    expect(gate.recovered(71_000)).toBeNull();
    // A new outage starts afresh.
    expect(gate.failed(80_000)).toEqual({ say: "outage", downMs: 0, suppressed: 0 });
  });
});
