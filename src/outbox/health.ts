import type { NotificationKind } from "../subscriptions/subscriptions.js";
import type { Decision } from "./retry.js";

/** What the engine must do about a subscription after one attempt; `outcome.ts` acts on it. */
export type HealthSignals = { deactivate: string | null; notify: NotificationKind[] };

/**
 * OneStock's model: `failing` once when consecutive failures reach retries_until_failure,
 * `deactivated` when a message dies or the receiver answers 410, `recovered` on the first
 * success after a `failing` notice went out (`failingNotified`: a resume resets the count, not
 * the promise of a `recovered`). Internal (notification) subscriptions raise nothing, so a
 * failing notification target never notifies about itself.
 */
export function assess(
  decision: Decision,
  failures: { before: number; after: number; failingNotified?: boolean },
  retriesUntilFailure: number,
  internal: boolean,
): HealthSignals {
  if (internal) return { deactivate: null, notify: [] };
  const crossed = failures.before < retriesUntilFailure && failures.after >= retriesUntilFailure;
  switch (decision.kind) {
    case "delivered":
      return { deactivate: null, notify: failures.failingNotified ? ["recovered"] : [] };
    case "retry":
      return { deactivate: null, notify: crossed ? ["failing"] : [] };
    case "dead":
      return { deactivate: "a message exhausted its retries", notify: crossed ? ["failing"] : [] };
    case "gone":
      return { deactivate: "the receiver answered 410 Gone", notify: [] };
  }
}
