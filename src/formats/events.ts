import type { DeliveryRow } from "../outbox/queries.js";
import { buildRequest } from "../outbox/request.js";
import type { AttemptResult } from "../outbox/retry.js";
import type { OutboundRequest } from "../outbox/send.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import { compileTemplate, evaluateTemplate, type Template, TemplateError } from "./template.ts";

const compiled = new WeakMap<Subscription, Template | null>();

/** An order-event subscription's `body.template`, compiled once per subscription object. */
function eventTemplate(sub: Subscription): Template | null {
  let t = compiled.get(sub);
  if (t === undefined) {
    const text = sub.body?.template;
    const events = !sub.subjects.every((s) => s.startsWith("stock."));
    t = text && events ? compileTemplate(text) : null;
    compiled.set(sub, t);
  }
  return t;
}

/** A request, or the failed attempt to record when the template cannot render this event. */
export type Prepared = { request: OutboundRequest } | { failed: AttemptResult };

/**
 * The request one attempt sends. With a `body.template`, an order event is reshaped at send time
 * (JSONata over the event plus `id` = its webhook-id, `subject`, `received_at`, and `event`, the
 * event as received), and the signature is over the reshaped body; without one the stored bytes
 * go as they are. The same event renders the same body on every attempt.
 */
export function prepareRequest(sub: Subscription, row: DeliveryRow, now: Date): Prepared | Promise<Prepared> {
  const template = row.sequence === null ? eventTemplate(sub) : null;
  // without a template, at once: no promise and no await for every request (#16)
  if (!template) return { request: buildRequest(sub, row, now) };
  return applyTemplate(template, sub, row, now);
}

async function applyTemplate(
  template: Template,
  sub: Subscription,
  row: DeliveryRow,
  now: Date,
): Promise<Prepared> {
  try {
    const event = JSON.parse(Buffer.from(row.payload).toString("utf8")) as Record<string, unknown>;
    const input = {
      ...event,
      id: row.message_id,
      subject: row.subject,
      received_at: row.created_at.toISOString(),
      event,
    };
    const body = Buffer.from(await evaluateTemplate(template, input));
    return { request: buildRequest(sub, { ...row, payload: body, content_type: "application/json" }, now) };
  } catch (err) {
    // Bad data for the template (or an event that is not JSON): retried like any failure, so a
    // fixed template (restart) or a replay sends it; the stored event is never touched.
    const why = err instanceof TemplateError ? err.where : `the event is not JSON: ${(err as Error).message}`;
    return {
      failed: {
        kind: "error",
        errorClass: "template",
        message: `subscription ${sub.name}: body.template failed on this event ${why}`,
      },
    };
  }
}
