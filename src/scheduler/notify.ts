import type { ExportDeps } from "../export/run.js";
import { notifyOnce } from "../outbox/outcome.js";

/** ops.snapshot.failed to the on_failure targets (at most once per notifications.min_interval). */
export const notifyFullNotRun = (
  deps: Pick<ExportDeps, "db" | "clock" | "subscriptions" | "notifyMinIntervalMs">,
  detail: string,
) =>
  deps.db.tx(async (tx) => {
    const now = deps.clock.now();
    await notifyOnce(
      tx,
      { all: deps.subscriptions, now, notifyMinIntervalMs: deps.notifyMinIntervalMs },
      "snapshot_failed",
      { detail },
      "stock",
    );
  });
