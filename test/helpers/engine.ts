import type { Clock } from "../../src/clock.js";
import { systemClock } from "../../src/clock.js";
import { type Config, loadConfig } from "../../src/config/index.js";
import type { Db } from "../../src/db/db.js";
import { createLogger } from "../../src/log.js";
import { createDeliveryEngine, type DeliveryEngine, type EngineDeps } from "../../src/outbox/engine.js";
import { enqueue, type NewMessage } from "../../src/outbox/enqueue.js";
import { createSender, type Sender } from "../../src/outbox/send.js";
import { buildSubscriptions, type Subscription } from "../../src/subscriptions/subscriptions.js";

export const quietLog = createLogger({ level: process.env.TEST_LOG_LEVEL ?? "silent", format: "json" });

/** A validated config from a YAML snippet (the same validation users get). */
export function testConfig(yaml: string): Config {
  return loadConfig(yaml, {}).config;
}

/**
 * One entry of a config's `subscriptions:` list taking order events, with `more` (lines indented
 * four spaces) appended: `subscriptions:\n${subscriptionYaml("s", url, "    concurrency: 2\n")}`.
 */
export const subscriptionYaml = (name: string, url: string, more = "") =>
  `  - name: ${name}\n    subjects: ["order.*"]\n    url: "${url}"\n${more}`;

/**
 * Forgets every notification (ops.* messages and their deliveries) and every min_interval
 * window, so that a test's notices and throttling do not carry over into the next test of a file.
 */
export async function resetNotifications(db: Db): Promise<void> {
  await db.query("delete from stock_sync.messages where subject like 'ops.%'");
  await db.query("delete from stock_sync.notifications_sent");
}

/** What loading a YAML snippet says is wrong with it (the message users see), or "no error". */
export function configError(yaml: string): string {
  try {
    loadConfig(yaml, {});
  } catch (err) {
    return (err as Error).message;
  }
  return "no error";
}

export type TestEngine = {
  engine: DeliveryEngine;
  subs: Subscription[];
  enqueue(msg: Omit<NewMessage, "contentType"> & { contentType?: string }): Promise<string>;
  stop(): Promise<void>;
};

/** A delivery engine over `db` with the config's subscriptions; enqueue wakes it via LISTEN. */
export async function startEngine(
  db: Db,
  config: Config,
  extra: {
    clock?: Clock;
    random?: () => number;
    onAttempt?: EngineDeps["onAttempt"];
    start?: boolean;
    vacuumCheckMs?: number;
    /** Wraps the real sender (the benchmarks time it). */
    wrapSender?: (sender: Sender) => Sender;
  } = {},
): Promise<TestEngine> {
  const subs = buildSubscriptions(config);
  const real = createSender({ smtp: config.notifications.smtp });
  const sender = extra.wrapSender?.(real) ?? real;
  const engine = createDeliveryEngine(
    {
      db,
      clock: extra.clock ?? systemClock,
      log: quietLog,
      sender,
      random: extra.random ?? (() => 0.5),
      onAttempt: extra.onAttempt,
    },
    {
      subscriptions: subs,
      pollIntervalMs: config.delivery.poll_interval,
      leaseMs: config.delivery.lease,
      shutdownGraceMs: config.delivery.shutdown_grace,
      retentionMs: config.delivery.retention,
      notifyMinIntervalMs: config.notifications.min_interval,
      vacuumCheckMs: extra.vacuumCheckMs,
    },
  );
  if (extra.start !== false) await engine.start();
  let stopped: Promise<void> | undefined;
  return {
    engine,
    subs,
    async enqueue(msg) {
      const { id, subscriptions } = await db.tx((tx) =>
        enqueue(tx, subs, { contentType: "application/json", ...msg }),
      );
      engine.wake(subscriptions);
      return id;
    },
    stop() {
      // once: a test that stops an engine itself leaves the same stop to its cleanup
      stopped ??= engine.stop().then(() => sender.close());
      return stopped;
    },
  };
}

export async function waitUntil<T>(
  fn: () => Promise<T | undefined | false>,
  timeoutMs = 15_000,
  what = "condition",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
