const AT_FLOORS_MS = 2;

/**
 * When an attempt's answer had come at the latest, on the database's clock: what a process that
 * takes the subscription over counts in its rate-limit window (recentAnswers). The receiver
 * counts arrivals and a request arrives before its answer, so the window holds across a restart
 * only if no recorded answer is earlier than its request's arrival: this errs late, never early.
 *
 * `at` is the attempt's start as the engine's estimate of the database's clock gave it, read
 * after the monotonic `elapsedMs` started (so the time measured since covers the preparation of
 * the request too: a body.template reshaping a large event took ~250 ms). `clockErrorMs` is how
 * far that estimate may be behind the database's clock (engine.ts: half the heartbeat's round
 * trip). 2 ms more for the two whole-millisecond floors in `at` (Date.now(), then the Date of it
 * plus the estimated offset).
 */
export function answeredBy(at: Date, elapsedMs: number, clockErrorMs: number): Date {
  return new Date(Math.ceil(at.getTime() + AT_FLOORS_MS + elapsedMs + clockErrorMs));
}

/**
 * The database's clock as this process estimates it from one round trip: the database's
 * clock_timestamp() (`dbNowMs`) placed at the middle of the round trip (this process's clock
 * read before and after it). `errorMs` is how far the estimate may be behind: half the round
 * trip, plus 1 ms for the whole milliseconds the three readings are floored to.
 */
export function estimateDbClock(
  beforeMs: number,
  dbNowMs: number,
  afterMs: number,
): { offsetMs: number; errorMs: number } {
  return { offsetMs: dbNowMs - (beforeMs + afterMs) / 2, errorMs: (afterMs - beforeMs) / 2 + 1 };
}
