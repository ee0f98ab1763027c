import type { Config, SubscriptionConfig } from "../config/index.js";

/** A subscription as the engine sees it: the configured ones plus internal notification targets. */
export type Subscription = SubscriptionConfig & {
  /** Notification targets: they never deactivate and never notify about themselves. */
  internal: boolean;
};

/** The ops.* subject of each notification kind, and the config list of targets it goes to. */
export const NOTIFICATION_SUBJECTS = {
  failing: "ops.subscription.failing",
  deactivated: "ops.subscription.deactivated",
  recovered: "ops.subscription.recovered",
  snapshot_refused: "ops.snapshot.refused",
  snapshot_failed: "ops.snapshot.failed",
} as const;
export type NotificationKind = keyof typeof NOTIFICATION_SUBJECTS;

const TARGET_LISTS = {
  on_failure: [
    NOTIFICATION_SUBJECTS.failing,
    NOTIFICATION_SUBJECTS.snapshot_refused,
    NOTIFICATION_SUBJECTS.snapshot_failed,
  ],
  on_deactivation: [NOTIFICATION_SUBJECTS.deactivated],
  on_failure_recovered: [NOTIFICATION_SUBJECTS.recovered],
} as const;

const SECOND = 1000;
const MINUTE = 60 * SECOND;

/**
 * Every subscription the engine runs. Notification targets become internal subscriptions named
 * `notify:<list>:<i>` (a colon cannot appear in a configured name), so notifications are durable
 * and retried like everything else, without a second delivery mechanism.
 */
export function buildSubscriptions(config: Config): Subscription[] {
  const subs: Subscription[] = config.subscriptions.map((s) => ({ ...s, internal: false }));
  for (const [list, subjects] of Object.entries(TARGET_LISTS)) {
    const targets = config.notifications[list as keyof typeof TARGET_LISTS];
    targets.forEach((url, i) => {
      subs.push({
        name: `notify:${list}:${i}`,
        subjects: [...subjects],
        url,
        method: "POST",
        headers: {},
        secrets: [],
        rate_limit: null,
        concurrency: 2,
        timeout: Math.min(10 * SECOND, config.delivery.lease - SECOND),
        retry_intervals: [30 * SECOND, 2 * MINUTE, 10 * MINUTE, 30 * MINUTE, 60 * MINUTE],
        retries_until_failure: Number.MAX_SAFE_INTEGER,
        ordering: "none",
        status: "enabled",
        internal: true,
      });
    });
  }
  return subs;
}
