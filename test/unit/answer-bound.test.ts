import { describe, expect, it } from "vitest";
import { answeredBy, estimateDbClock } from "../../src/outbox/answer.js";
import { seededRandom } from "../helpers/random.js";

/**
 * The recorded answer time against the true one, with the clocks simulated as the engine reads
 * them: true time is a float; this process's Date.now() and the database's clock_timestamp() (as
 * the driver parses it) are floored to whole ms; the engine's clock is a Date of Date.now() plus
 * the estimated offset (truncated again); the worker's stopwatch is performance.now() (a float),
 * started before the clock is read and read after the answer.
 */
describe("answeredBy with estimateDbClock", () => {
  it("is never earlier than the answer on the database's clock, and late by no more than the round trip, the reads' delays and 5 ms", () => {
    const random = seededRandom("answer-bound");
    const between = (lo: number, hi: number) => lo + random() * (hi - lo);
    // half of the time, the worst case: no time between two readings, the database's at the start
    const orNone = (ms: number) => (random() < 0.5 ? 0 : random() * ms);
    let early = Number.NEGATIVE_INFINITY; // how much the bound was earlier than the truth, at worst
    let late = Number.NEGATIVE_INFINITY; // how much later, beyond the round trip and the reads' delays
    for (let i = 0; i < 20_000; i++) {
      const local = between(-5e6, 5e6); // this process's clock minus true time
      const db = between(-5e6, 5e6); // the database's clock minus true time
      const localNow = (t: number) => Math.floor(t + local);
      const dbNow = (t: number) => Math.floor(t + db);
      // the heartbeat: the database reads its clock somewhere within the round trip
      const sentAt = between(1.7e12, 1.8e12);
      const rtt = random() < 0.2 ? between(0, 2) : between(0, 500);
      const estimate = estimateDbClock(localNow(sentAt), dbNow(sentAt + orNone(rtt)), localNow(sentAt + rtt));
      // an attempt a while later: stopwatch started, then the engine's clock read; the answer comes
      // after the preparation and the request; the stopwatch is read a moment after it
      const start = sentAt + rtt + between(0, 20_000);
      const clockRead = start + orNone(1);
      const at = new Date(localNow(clockRead) + estimate.offsetMs);
      const answer = clockRead + between(0, 15_000);
      const stopwatchRead = answer + orNone(1);
      const bound = answeredBy(at, stopwatchRead - start, estimate.errorMs).getTime();
      const truth = answer + db;
      early = Math.max(early, truth - bound);
      late = Math.max(late, bound - truth - (rtt + (clockRead - start) + (stopwatchRead - answer)));
    }
    expect(early).toBeLessThanOrEqual(0);
    expect(late).toBeLessThanOrEqual(5); // 4 ms of floors, 1 of the ceil
  });
});
