/**
 * Retry decisions for one delivery attempt (SPEC §5): pure, with time and randomness passed in.
 * delivery.ts records the attempt and acts on the Decision.
 */
import { redactString } from "../config/redact.ts";

export type ErrorClass =
  | "timeout"
  | "connect"
  | "network"
  | "tls"
  | "file"
  | "mail"
  | "other"
  // an order event's body.template could not render this event (src/formats/events.ts)
  | "template"
  // sftp:// destinations (src/sftp/classify.ts); "sftp" is an SFTP failure of no known kind
  | "auth_failed"
  | "host_key_mismatch"
  | "permission_denied"
  | "no_such_directory"
  | "disk_full"
  | "connection_refused"
  | "sftp";

/** What one attempt came to: an HTTP response, or an error before one arrived. */
export type AttemptResult =
  | { kind: "response"; status: number; retryAfter?: string | null }
  | { kind: "error"; errorClass: ErrorClass; message: string };

/**
 * `gone` (HTTP 410): deactivate the subscription at once; the message is kept for a later resume.
 * `delayMs` is when it is due again unless this very answer deactivated the subscription (then it
 * is due at once, to go first on resume): a 410 is never a reason to ask again sooner than a retry
 * (a target that cannot be deactivated, or one already paused, would otherwise be asked in a loop).
 */
export type Decision =
  | { kind: "delivered" }
  /**
   * `throttled`: the receiver asked for a pause (429, or 503 with Retry-After). The whole
   * subscription waits `delayMs`; the attempt uses up no retry and counts as no failure, since
   * a receiver that is pacing us is not failing.
   */
  | { kind: "retry"; delayMs: number; throttled?: true }
  | { kind: "dead" }
  | { kind: "gone"; delayMs: number };

const JITTER = 0.2;

/**
 * The outcome of attempt number `attemptNumber` (1 = the first attempt, just made). Every failure,
 * whatever its status or error class, is retried after `intervalsMs[attemptNumber - 1]` × U(0.8,
 * 1.2) until the intervals run out; then the message is dead. A 429/503 with a Retry-After hint
 * is throttling, not failure: the retry waits for the hint too (capped at the last interval), the
 * whole subscription with it, and the message is never dead for it.
 * @example decide({ kind: "response", status: 500 }, 1, [30_000, 60_000], now, Math.random)
 *   // { kind: "retry", delayMs: 24_000…36_000 }
 */
/** An attempt the destination took: a 2xx answer (SFTP and file:// record theirs as 200). */
export const isDelivered = (result: AttemptResult): boolean =>
  result.kind === "response" && result.status >= 200 && result.status < 300;

export function decide(
  result: AttemptResult,
  attemptNumber: number,
  intervalsMs: readonly number[],
  now: Date,
  random: () => number,
): Decision {
  if (isDelivered(result)) return { kind: "delivered" };
  const hint = retryAfterHint(result, now);
  const gone = result.kind === "response" && result.status === 410;
  // A 410 keeps the message, and a throttled attempt uses up no retry: past the schedule's end,
  // the last interval.
  const base = intervalsMs[attemptNumber - 1] ?? (gone || hint !== null ? intervalsMs.at(-1) : undefined);
  if (base === undefined) return gone ? { kind: "gone", delayMs: 0 } : { kind: "dead" };

  const jittered = Math.round(base * (1 - JITTER + 2 * JITTER * random()));
  if (gone) return { kind: "gone", delayMs: jittered };
  if (hint === null) return { kind: "retry", delayMs: jittered };
  const last = intervalsMs.at(-1) ?? base;
  return { kind: "retry", delayMs: Math.max(jittered, Math.min(hint, last)), throttled: true };
}

// Svix and Hook0 honour Retry-After only on throttling statuses; SPEC §5 names 429 and 503.
function retryAfterHint(result: AttemptResult, now: Date): number | null {
  if (result.kind !== "response" || (result.status !== 429 && result.status !== 503)) return null;
  return parseRetryAfter(result.retryAfter, now);
}

// ---------------------------------------------------------------- Retry-After

const DELTA_SECONDS = /^\d+$/;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)";
const MON = `(?<mon>${MONTHS.join("|")})`;
const TIME = "(?<h>\\d{2}):(?<m>\\d{2}):(?<s>\\d{2})";
// RFC 7231 §7.1.1.1: senders use IMF-fixdate; recipients must also read the two obsolete forms.
const HTTP_DATES = [
  new RegExp(`^${DAY}, (?<day>\\d{2}) ${MON} (?<year>\\d{4}) ${TIME} GMT$`), // Sun, 06 Nov 1994 08:49:37 GMT
  new RegExp(`^[A-Z][a-z]+day, (?<day>\\d{2})-${MON}-(?<year>\\d{2}) ${TIME} GMT$`), // Sunday, 06-Nov-94 …
  new RegExp(`^${DAY} ${MON} (?<day>[ \\d]\\d) ${TIME} (?<year>\\d{4})$`), // Sun Nov  6 08:49:37 1994
];

/**
 * A Retry-After value in milliseconds from `now`: delta-seconds ("120") or an HTTP date (a date in
 * the past gives 0). Anything else gives null, so a bad hint falls back to the schedule.
 * @example parseRetryAfter("Wed, 21 Oct 2015 07:28:00 GMT", new Date("2015-10-21T07:27:00Z")) // 60000
 */
export function parseRetryAfter(value: string | null | undefined, now: Date): number | null {
  const text = value?.trim();
  if (!text) return null;
  if (DELTA_SECONDS.test(text)) return Number(text) * 1000;
  const at = parseHttpDate(text, now);
  return at === null ? null : Math.max(0, at - now.getTime());
}

function parseHttpDate(text: string, now: Date): number | null {
  const g = HTTP_DATES.map((re) => re.exec(text)?.groups).find((groups) => groups !== undefined);
  if (!g) return null;
  const [year, day, h, m, s] = [g.year, g.day, g.h, g.m, g.s].map(Number) as [number, ...number[]];
  const month = MONTHS.indexOf(g.mon ?? "");
  const fullYear = year >= 100 ? year : twoDigitYear(year, now);
  const ms = Date.UTC(fullYear, month, day!, h, m, s);
  // Date.UTC rolls "31 Feb" over into March; a date that does not round-trip is garbage
  const back = new Date(ms);
  const valid = back.getUTCDate() === day && back.getUTCMonth() === month && h! < 24 && m! < 60 && s! <= 60;
  return valid ? ms : null;
}

/** RFC 7231: a two-digit year more than 50 years ahead means the most recent past such year. */
function twoDigitYear(yy: number, now: Date): number {
  const candidate = now.getUTCFullYear() - (now.getUTCFullYear() % 100) + yy;
  return candidate > now.getUTCFullYear() + 50 ? candidate - 100 : candidate;
}

// ---------------------------------------------------------------- errors

// Codes from node (net, dns, tls), undici (lib/core/errors.js) and nodemailer (dist/*/errors.js).
const TIMEOUT_CODES = new Set([
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "ETIMEDOUT",
]);
const TIMEOUT_NAMES = new Set(["AbortError", "TimeoutError"]);
const CONNECT_CODES = new Set(["ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);
const NETWORK_CODES = new Set(["ECONNRESET", "UND_ERR_SOCKET", "EPIPE", "ECONNABORTED"]);
const TLS_CODE = /^(?:ERR_TLS_|ERR_SSL_|EPROTO$)|CERT|SELF_SIGNED|UNABLE_TO_VERIFY/;
const MAIL_CODES = new Set([
  "ECONNECTION",
  "ESOCKET",
  "EDNS",
  "ETLS",
  "EPROTOCOL",
  "EENVELOPE",
  "EMESSAGE",
  "EAUTH",
  "ENOAUTH",
  "EREQUIRETLS",
]);
const MAX_MESSAGE = 500;

/**
 * Classifies a thrown delivery error, looking through `cause` and AggregateError's `errors`
 * (undici's fetch wraps the socket error in "fetch failed"). The message joins the chain's
 * messages with URL passwords and other secrets masked, ready to store and show.
 * @example classifyError(err) // { errorClass: "connect", message: "fetch failed: connect ECONNREFUSED 127.0.0.1:9" }
 */
export function classifyError(err: unknown): { errorClass: ErrorClass; message: string } {
  const chain = errorChain(err);
  const errorClass = chain.map(classOf).find((c) => c !== undefined) ?? "other";
  const messages = [...new Set(chain.map((e) => (typeof e.message === "string" ? e.message.trim() : "")))];
  const text = messages.filter((m) => m !== "").join(": ") || String(err);
  return { errorClass, message: redactString(text).slice(0, MAX_MESSAGE) };
}

function classOf(e: Record<string, unknown>): ErrorClass | undefined {
  const code = typeof e.code === "string" ? e.code : "";
  if (TIMEOUT_CODES.has(code) || TIMEOUT_NAMES.has(String(e.name))) return "timeout";
  if (CONNECT_CODES.has(code)) return "connect";
  if (NETWORK_CODES.has(code)) return "network";
  if (TLS_CODE.test(code)) return "tls";
  if (MAIL_CODES.has(code) || typeof e.responseCode === "number") return "mail";
  // node's fs errors carry the path they failed on; socket errors carry an address instead
  if (typeof e.path === "string" && typeof e.syscall === "string") return "file";
  return undefined;
}

/** The error and what it wraps, outermost first; bounded, since a cause may point back. */
function errorChain(err: unknown): Record<string, unknown>[] {
  const seen = new Set<unknown>();
  const queue: unknown[] = [err];
  const chain: Record<string, unknown>[] = [];
  while (queue.length > 0 && chain.length < 10) {
    const e = queue.shift();
    if (e === null || typeof e !== "object" || seen.has(e)) continue;
    seen.add(e);
    const record = e as Record<string, unknown>;
    chain.push(record);
    queue.push(record.cause, ...(Array.isArray(record.errors) ? record.errors : []));
  }
  return chain;
}
