import { createHash } from "node:crypto";
import type { Config, SubscriptionConfig } from "../config/index.js";

/** A subscription as the engine sees it: the configured ones plus internal notification targets. */
export type Subscription = SubscriptionConfig & {
  /** Notification targets: they never deactivate and never notify about themselves. */
  internal: boolean;
  /**
   * A notification target's names before they were named by target (`notify:<list>:<i>`), so the
   * undelivered notifications of a database written by an older version are adopted on start.
   */
  formerNames?: string[];
};

/** The ops.* subject of each notification kind, and the config list of targets it goes to. */
export const NOTIFICATION_SUBJECTS = {
  failing: "ops.subscription.failing",
  deactivated: "ops.subscription.deactivated",
  recovered: "ops.subscription.recovered",
  snapshot_refused: "ops.snapshot.refused",
  snapshot_failed: "ops.snapshot.failed",
  import_rejected: "ops.import.rejected_rows",
} as const;
export type NotificationKind = keyof typeof NOTIFICATION_SUBJECTS;

const TARGET_LISTS = {
  on_failure: [
    NOTIFICATION_SUBJECTS.failing,
    NOTIFICATION_SUBJECTS.snapshot_refused,
    NOTIFICATION_SUBJECTS.snapshot_failed,
    NOTIFICATION_SUBJECTS.import_rejected,
  ],
  on_deactivation: [NOTIFICATION_SUBJECTS.deactivated],
  on_failure_recovered: [NOTIFICATION_SUBJECTS.recovered],
} as const;

const SECOND = 1000;
const MINUTE = 60 * SECOND;

/**
 * Every subscription the engine runs. Each distinct notification target becomes one internal
 * subscription, named by what it is, `notify:<hash of the target>` (a colon cannot appear in a
 * configured name; a hash, since targets hold tokens and names are shown), taking the subjects of
 * every list that names it: reordering or shortening a list never sends a pending notification
 * elsewhere. Notifications are thereby durable and retried like everything else, without a second
 * delivery mechanism.
 */
export function buildSubscriptions(config: Config): Subscription[] {
  const subs: Subscription[] = config.subscriptions.map((s) => ({ ...s, internal: false }));
  const targets = new Map<string, { subjects: Set<string>; formerNames: string[] }>();
  for (const [list, subjects] of Object.entries(TARGET_LISTS)) {
    config.notifications[list as keyof typeof TARGET_LISTS].forEach((url, i) => {
      const target = targets.get(url) ?? { subjects: new Set<string>(), formerNames: [] };
      targets.set(url, target);
      for (const subject of subjects) target.subjects.add(subject);
      target.formerNames.push(`notify:${list}:${i}`);
    });
  }
  for (const [url, { subjects, formerNames }] of targets) {
    subs.push({
      name: notificationTargetName(url),
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
      formerNames,
    });
  }
  return subs;
}

/** `notify:` + the first 16 hex digits of the target's SHA-256: stable, short, no secret shown. */
export function notificationTargetName(target: string): string {
  return `notify:${createHash("sha256").update(target).digest("hex").slice(0, 16)}`;
}
