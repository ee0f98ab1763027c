/**
 * A batch of received events as pure data: what to write (each event id once, in arrival order)
 * and, once written, what each request is answered. No I/O; queries.ts writes the rows.
 */
import { targetsOf } from "../outbox/enqueue.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { type InboundEvent, messageIdFor } from "./event.js";

/** One accepted request: the event, its raw body, and when it was received. */
export type Received = {
  event: InboundEvent;
  payload: { body: Buffer; contentType: string };
  now: Date;
};

export type Intake = { duplicate: boolean; messageId: string; subscriptions: string[] };

/** An inbox row plus the outbox message and deliveries it becomes when it is new. */
export type EventRow = {
  id: string;
  subject: string;
  receivedAt: Date;
  messageId: string;
  payload: Buffer;
  contentType: string;
  orderingKey: string;
  /** The matching subscriptions, in configuration order; their count is the inbox's routed_to. */
  subscriptions: string[];
};

/** `rows` holds each event id once; `rowOf[i]` is the row request i is answered from. */
export type BatchPlan = { rows: EventRow[]; rowOf: number[]; copy: boolean[] };

export function planBatch(subs: readonly Subscription[], batch: readonly Received[]): BatchPlan {
  const rows: EventRow[] = [];
  const byId = new Map<string, number>();
  const rowOf: number[] = [];
  const copy: boolean[] = [];
  for (const { event, payload, now } of batch) {
    const seen = byId.get(event.id);
    // a second copy in the same batch would conflict with the first inside one statement
    if (seen !== undefined) {
      rowOf.push(seen);
      copy.push(true);
      continue;
    }
    byId.set(event.id, rows.length);
    rowOf.push(rows.length);
    copy.push(false);
    rows.push({
      id: event.id,
      subject: event.subject,
      receivedAt: now,
      messageId: messageIdFor(event.id),
      payload: payload.body,
      contentType: payload.contentType,
      orderingKey: event.orderId,
      subscriptions: routeOf(subs, event.subject),
    });
  }
  return { rows, rowOf, copy };
}

// The subscriptions each subject goes to, per configured list: matched once per subject, not for
// every event (the list is fixed for a process's life; a few subjects carry all the events). A
// list of names is shared by the rows of its subject: read, never changed. Bounded, since
// senders choose the subjects.
const routes = new WeakMap<readonly Subscription[], Map<string, string[]>>();
const MAX_SUBJECTS = 1000;

function routeOf(subs: readonly Subscription[], subject: string): string[] {
  let bySubject = routes.get(subs);
  if (!bySubject) {
    bySubject = new Map();
    routes.set(subs, bySubject);
  }
  let names = bySubject.get(subject);
  if (!names) {
    names = targetsOf(subs, { subject }).map((s) => s.name);
    if (bySubject.size >= MAX_SUBJECTS) bySubject.clear();
    bySubject.set(subject, names);
  }
  return names;
}

/** Each request's answer: new when its row was inserted and it was the first copy. */
export function answers(plan: BatchPlan, inserted: ReadonlySet<string>): Intake[] {
  return plan.rowOf.map((r, i) => {
    const row = plan.rows[r]!;
    if (plan.copy[i] || !inserted.has(row.id)) {
      return { duplicate: true, messageId: row.messageId, subscriptions: [] };
    }
    return { duplicate: false, messageId: row.messageId, subscriptions: row.subscriptions };
  });
}
