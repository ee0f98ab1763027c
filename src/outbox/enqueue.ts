import type { Queryable } from "../db/db.js";
import { matchesAny } from "../subscriptions/subjects.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { newMessageId } from "./ids.js";
import { insertDeliveries, insertMessage, nextSequence, notifyOutbox } from "./queries.js";

export type NewMessage = {
  subject: string;
  payload: Buffer | string;
  contentType: string;
  /** Extra headers sent with every attempt (e.g. stock-sync-kind). */
  headers?: Record<string, string>;
  /** Deliveries with the same key go in order on `ordering: key` subscriptions (the order id). */
  orderingKey?: string | null;
  /** Defaults to a fresh time-sorted id; inbound events reuse theirs so a duplicate is detected. */
  id?: string;
  /** Stock messages carry the subscription's next sequence number. */
  sequenced?: boolean;
  /** The subscription an ops.* event is about: it never receives news about itself. */
  about?: string;
  createdAt?: Date;
  /** The stock run that produced it (stock_sync.stock_runs). */
  runId?: number;
};

export type Enqueued = { id: string; subscriptions: string[] };

/** The subscriptions a message fans out to: those whose subjects match, minus the one it is about. */
export const targetsOf = (subs: readonly Subscription[], msg: Pick<NewMessage, "subject" | "about">) =>
  subs.filter((s) => s.name !== msg.about && matchesAny(s.subjects, msg.subject));

/**
 * Stores a message and one delivery per matching subscription, inside the caller's transaction,
 * so the message exists exactly when the work that produced it committed. Callers wake the
 * engine after commit with the returned subscription names.
 */
export async function enqueue(
  tx: Queryable,
  subs: readonly Subscription[],
  msg: NewMessage,
): Promise<Enqueued> {
  const id = msg.id ?? newMessageId(msg.createdAt);
  const targets = targetsOf(subs, msg);
  await insertMessage(tx, {
    id,
    subject: msg.subject,
    payload: typeof msg.payload === "string" ? Buffer.from(msg.payload) : msg.payload,
    contentType: msg.contentType,
    headers: msg.headers ?? {},
    orderingKey: msg.orderingKey ?? null,
    runId: msg.runId ?? null,
  });
  if (targets.length === 0) return { id, subscriptions: [] };
  const sequences: (number | null)[] = [];
  for (const s of targets) sequences.push(msg.sequenced ? await nextSequence(tx, s.name) : null);
  const names = targets.map((s) => s.name);
  await insertDeliveries(tx, id, msg.orderingKey ?? null, names, sequences);
  await notifyOutbox(tx, names);
  return { id, subscriptions: names };
}
