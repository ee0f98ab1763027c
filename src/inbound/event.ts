/**
 * What an inbound order event must look like (SPEC §4, §7), as pure functions: the raw body in,
 * the event's id, subject and order id out, or the reason it is refused.
 *
 * - The body is UTF-8 JSON holding an object.
 * - `type` (else `topic`) names the event: segments of `[A-Za-z0-9_-]` joined by ".", at most 100
 *   characters. The subject is `order.<type>`, dots kept, so `line.cancelled` becomes
 *   `order.line.cancelled` and `order.*` still matches it. The same rule as configured subjects,
 *   minus the wildcard; it also keeps subjects safe in headers and file names.
 * - The id is the body's `id` (a string, or a whole number written as decimal), else the
 *   `webhook-id` header: 1–256 characters, no control characters, well-formed Unicode.
 * - The order id is read from a dotted path (default `data.order_id`), else the event id.
 */
import { createHash } from "node:crypto";
import { HttpError } from "../http/errors.js";

export type InboundEvent = { id: string; subject: string; orderId: string };

const TYPE = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;
const MAX_TYPE = 100;
const MAX_ID = 256;
// C0, DEL and C1 controls; \p{Cs} under the u flag matches only unpaired surrogates
const UNSAFE = /[\u0000-\u001f\u007f-\u009f]|\p{Cs}/u;

const utf8 = new TextDecoder("utf-8", { fatal: true });

const invalid = (detail: string) => new HttpError(400, "invalid_event", detail);

/** Parses and checks an event body; throws HttpError(400) with what is wrong. */
export function parseEvent(raw: Buffer, headerId: string | undefined, orderIdPath: string): InboundEvent {
  const body = parseJson(raw);
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw invalid("the body must be a JSON object");
  }
  const fields = body as Record<string, unknown>;
  const subject = `order.${eventType(fields)}`;
  const id = eventId(fields, headerId);
  const orderId = orderIdAt(fields, orderIdPath) ?? id;
  return { id, subject, orderId };
}

function parseJson(raw: Buffer): unknown {
  let text: string;
  try {
    text = utf8.decode(raw);
  } catch {
    throw new HttpError(400, "invalid_json", "the body is not valid UTF-8");
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, "invalid_json", "the body is not valid JSON");
  }
}

function eventType(fields: Record<string, unknown>): string {
  // `type` wins when present, even if invalid: guessing between two fields would hide a bug
  const name = own(fields, "type") !== undefined ? "type" : "topic";
  const value = own(fields, name);
  if (value === undefined) throw invalid('the event needs a "type" or "topic"');
  if (typeof value !== "string" || value.length > MAX_TYPE || !TYPE.test(value)) {
    throw invalid(
      `"${name}" must be a string of letters, digits, "_", "-" and single dots, at most ${MAX_TYPE} characters`,
    );
  }
  return value;
}

function eventId(fields: Record<string, unknown>, headerId: string | undefined): string {
  const value = own(fields, "id");
  if (value === undefined || value === null) {
    if (headerId !== undefined && isSafeId(headerId)) return headerId;
    throw invalid('the event needs an "id" (or a webhook-id header)');
  }
  const id = scalarId(value);
  if (id === undefined) throw invalid(`"id" ${ID_RULE}`);
  return id;
}

const ID_RULE = `must be a non-empty string (at most ${MAX_ID} characters, no control characters) or a whole number`;

/** The value at a dotted path of own properties (never the prototype chain); null counts as absent. */
function orderIdAt(fields: Record<string, unknown>, path: string): string | undefined {
  let at: unknown = fields;
  for (const key of path.split(".")) {
    if (at === null || typeof at !== "object" || Array.isArray(at)) return undefined;
    at = own(at as Record<string, unknown>, key);
  }
  if (at === undefined || at === null) return undefined;
  const id = scalarId(at);
  if (id === undefined) throw invalid(`"${path}" ${ID_RULE}`);
  return id;
}

function scalarId(value: unknown): string | undefined {
  if (typeof value === "number") return Number.isSafeInteger(value) ? String(value) : undefined;
  return typeof value === "string" && isSafeId(value) ? value : undefined;
}

const isSafeId = (s: string) => s.length > 0 && s.length <= MAX_ID && !UNSAFE.test(s);

const own = (obj: Record<string, unknown>, key: string) => (Object.hasOwn(obj, key) ? obj[key] : undefined);

const VERBATIM = /^[A-Za-z0-9_-]{1,200}$/;

/**
 * The outbox message id (the outbound `webhook-id`) of an event: derived, so a duplicate that got
 * past the inbox would still collide on the message's primary key. Plain ids stay readable
 * (`evt_<id>`); others are hashed (`evh_<sha256>`), since a webhook-id must be short printable
 * ASCII without "." and also names files. The prefixes never collide with each other or `msg_`.
 * One sender using both `Q` and `evt_Q` for different events would map both to `evt_Q`: the
 * second is refused (its message id is taken; a 500 the sender retries, and the log says why),
 * never taken for a duplicate.
 */
export function messageIdFor(eventId: string): string {
  // An id that already reads `evt_…` (many senders' own convention) is not prefixed twice. Ids
  // of events already stored keep their message ids: only ids starting with `evt_` map anew.
  if (VERBATIM.test(eventId)) return eventId.startsWith("evt_") ? eventId : `evt_${eventId}`;
  return `evh_${createHash("sha256").update(eventId).digest("base64url")}`;
}
