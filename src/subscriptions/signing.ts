/**
 * Webhook signatures: Standard Webhooks v1 for what we send and receive (SPEC §5, §7), and
 * OneStock's `Onestock-Signature` for what an OMS sends us. Pure: time comes in as unix seconds.
 */
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from "node:crypto";
import { ConnectorError } from "../errors.ts";

export type VerifyFailure =
  | "missing_headers"
  | "bad_timestamp"
  | "timestamp_too_old"
  | "timestamp_too_new"
  | "no_matching_signature";

/** `id` is the `webhook-id` (always "" for OneStock, which has no id header). */
export type VerifyResult = { ok: true; id: string; timestamp: number } | { ok: false; reason: VerifyFailure };

type Headers = Record<string, string | string[] | undefined>;

const WHSEC_PREFIX = "whsec_";
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
// The id goes into the signed content before a ".", so it must not hold one (Standard Webhooks §2.1).
const MSG_ID = /^[\x21-\x2d\x2f-\x7e]{1,256}$/;
const UNIX_SECONDS = /^\d{1,12}$/;
const HMAC_BYTES = 32;

// ---------------------------------------------------------------- Standard Webhooks

/**
 * The HMAC key of a `whsec_…` secret (the prefix is optional, as in the `standardwebhooks` package).
 * The error never quotes the secret, so it is safe to log.
 */
export function decodeSecret(secret: string): Buffer {
  const text = secret.startsWith(WHSEC_PREFIX) ? secret.slice(WHSEC_PREFIX.length) : secret;
  const key = BASE64.test(text) ? Buffer.from(text, "base64") : Buffer.alloc(0);
  if (key.length === 0) {
    throw new ConnectorError("CONFIG_INVALID", 'a webhook secret is not "whsec_" followed by base64');
  }
  return key;
}

/**
 * `webhook-signature` for a message: one `v1,<base64>` per secret, in the given order, over
 * `${msgId}.${timestamp}.` followed by the exact body bytes (which may be gzip).
 * @example sign(["whsec_…"], "msg_1", 1700000000, '{"a":1}') // "v1,K5oZ…="
 */
export function sign(
  secrets: readonly string[],
  msgId: string,
  timestamp: number,
  body: Buffer | string,
): string {
  if (!Number.isSafeInteger(timestamp) || timestamp < 0) {
    throw new ConnectorError(
      "INVALID_INPUT",
      `webhook timestamp must be whole unix seconds, got ${timestamp}`,
    );
  }
  const prefix = standardPrefix(msgId, String(timestamp));
  const content = toBuffer(body);
  return secrets
    .map((secret) => `v1,${hmac(standardKey(secret), prefix, content).toString("base64")}`)
    .join(" ");
}

/** The Standard Webhooks headers; `webhook-signature` only when there is a secret to sign with. */
export function signatureHeaders(
  secrets: readonly string[],
  msgId: string,
  timestamp: number,
  body: Buffer | string,
): Record<string, string> {
  const headers: Record<string, string> = { "webhook-id": msgId, "webhook-timestamp": String(timestamp) };
  if (secrets.length > 0) headers["webhook-signature"] = sign(secrets, msgId, timestamp, body);
  return headers;
}

/**
 * Checks Standard Webhooks headers (lower-case names) against the raw body. Any `v1,` entry may
 * match any secret (rotation); other versions (`v1a,`) are skipped. A malformed `webhook-id`
 * counts as missing. With no secrets nothing can match.
 */
export function verifyStandard(
  headers: Headers,
  rawBody: Buffer,
  secrets: readonly string[],
  nowSec: number,
  toleranceSec: number,
): VerifyResult {
  const id = single(headers["webhook-id"]);
  const ts = single(headers["webhook-timestamp"]);
  const signature = joined(headers["webhook-signature"]);
  if (!id || !ts || !signature || !MSG_ID.test(id)) return fail("missing_headers");
  const timestamp = checkTimestamp(ts, nowSec, toleranceSec);
  if (typeof timestamp !== "number") return timestamp;

  // nothing to match (the check of the headers alone, before the body is read): no HMAC to make
  if (secrets.length === 0) return fail("no_matching_signature");

  // sign the timestamp as sent, so "0170…" is checked as the sender signed it
  const prefix = standardPrefix(id, ts);
  const offered = signature.split(/\s+/).flatMap((entry) => {
    const comma = entry.indexOf(",");
    return comma > 0 && entry.slice(0, comma) === "v1" ? [decodeBase64(entry.slice(comma + 1))] : [];
  });
  const expected = secrets.map((secret) => hmac(standardKey(secret), prefix, rawBody));
  return anyEqual(offered, expected) ? { ok: true, id, timestamp } : fail("no_matching_signature");
}

/** What goes before the body in the signed content: `${msgId}.${timestamp}.` */
const standardPrefix = (msgId: string, timestamp: string) => `${msgId}.${timestamp}.`;

/** The HMAC key of a Standard Webhooks secret, decoded once (see keyOf). */
const standardKey = (secret: string) => keyOf(standardKeys, secret, decodeSecret);

// ---------------------------------------------------------------- OneStock

/**
 * What a OneStock signature covers and how it is written. OneStock's docs leave both open (they
 * speak of "encryption of the timestamp"), so this is the one place to change if a tenant differs.
 */
export type OnestockScheme = {
  signed: "timestamp.body" | "timestamp" | "body";
  encoding: "hex" | "base64";
};

/** `server.inbound.onestock.signed` in the config, as a scheme. */
export const ONESTOCK_SIGNED = { "t.body": "timestamp.body", t: "timestamp", body: "body" } as const;

/** HMAC-SHA256 of `<t>.<raw body>`, hex: the Stripe-like reading of SPEC §7. */
export const DEFAULT_ONESTOCK_SCHEME: Readonly<OnestockScheme> = Object.freeze({
  signed: "timestamp.body",
  encoding: "hex",
});

/**
 * `Onestock-Signature: t=<unix>,h0=<sig>,h1=<sig>…`, one hN per key in the given order (newest
 * first). Keys are free-form `hash_key` strings, used as their UTF-8 bytes.
 * @example signOnestock(["new-key", "old-key"], 1700000000, body) // "t=1700000000,h0=…,h1=…"
 */
export function signOnestock(
  keys: readonly string[],
  t: number,
  body: Buffer | string,
  scheme: OnestockScheme = DEFAULT_ONESTOCK_SCHEME,
): string {
  const content = onestockContent(String(t), toBuffer(body), scheme);
  const sigs = keys.map((key, i) => `h${i}=${hmac(onestockKey(key), ...content).toString(scheme.encoding)}`);
  return [`t=${t}`, ...sigs].join(",");
}

/**
 * Checks an `Onestock-Signature` header: any configured key may match any hN (rotation on
 * either side). Separators between fields may be "," ";" "." or spaces, since OneStock's own
 * example mixes them.
 */
export function verifyOnestock(
  header: string | undefined,
  rawBody: Buffer,
  keys: readonly string[],
  nowSec: number,
  toleranceSec: number,
  scheme: OnestockScheme = DEFAULT_ONESTOCK_SCHEME,
): VerifyResult {
  const fields = header ? parseOnestockHeader(header) : null;
  if (!fields) return fail("missing_headers");
  const timestamp = checkTimestamp(fields.t, nowSec, toleranceSec);
  if (typeof timestamp !== "number") return timestamp;
  if (keys.length === 0) return fail("no_matching_signature");

  const content = onestockContent(fields.t, rawBody, scheme);
  const decode = scheme.encoding === "hex" ? decodeHex : decodeBase64;
  const offered = fields.sigs.map(decode);
  const expected = keys.map((key) => hmac(onestockKey(key), ...content));
  return anyEqual(offered, expected) ? { ok: true, id: "", timestamp } : fail("no_matching_signature");
}

// A value runs to the next separator; greedy tokens keep "h1=" inside a base64 value from matching.
const ONESTOCK_FIELD = /\b(t|h\d+)=([^\s,;.]*)/g;

function parseOnestockHeader(header: string): { t: string; sigs: string[] } | null {
  let t: string | undefined;
  const sigs: string[] = [];
  for (const [, name, value = ""] of header.matchAll(ONESTOCK_FIELD)) {
    if (name === "t") t ??= value;
    else sigs.push(value);
  }
  return t === undefined || sigs.length === 0 ? null : { t, sigs };
}

/** What a OneStock signature covers, in the order it is hashed. */
const onestockContent = (t: string, body: Buffer, scheme: OnestockScheme): (string | Buffer)[] =>
  scheme.signed === "timestamp" ? [t] : scheme.signed === "body" ? [body] : [`${t}.`, body];

/** A OneStock key (free-form, used as its UTF-8 bytes), imported once (see keyOf). */
const onestockKey = (key: string) => keyOf(onestockKeys, key, (k) => Buffer.from(k));

// ---------------------------------------------------------------- shared

function checkTimestamp(text: string, nowSec: number, toleranceSec: number): number | VerifyResult {
  if (!UNIX_SECONDS.test(text)) return fail("bad_timestamp");
  const timestamp = Number(text);
  if (timestamp < nowSec - toleranceSec) return fail("timestamp_too_old");
  if (timestamp > nowSec + toleranceSec) return fail("timestamp_too_new");
  return timestamp;
}

/** Constant-time per comparison; lengths are public (every HMAC-SHA256 is 32 bytes). */
function anyEqual(offered: readonly (Buffer | null)[], expected: readonly Buffer[]): boolean {
  return offered.some(
    (sig) =>
      sig !== null &&
      sig.length === HMAC_BYTES &&
      expected.some((want) => want.length === sig.length && timingSafeEqual(sig, want)),
  );
}

/** HMAC-SHA256 of the parts one after the other (strings as UTF-8), as if concatenated. */
function hmac(key: KeyObject, ...parts: (string | Buffer)[]): Buffer {
  const h = createHmac("sha256", key);
  for (const part of parts) h.update(part);
  return h.digest();
}

// Secrets decoded and imported as keys once, not at every request (#16: decoding the secret and
// importing the key each time cost more than the HMAC itself). Keyed by the configured text;
// the bound only keeps a process that is handed ever new secrets from growing for ever.
const standardKeys = new Map<string, KeyObject>();
const onestockKeys = new Map<string, KeyObject>();
const MAX_KEYS = 256;

function keyOf(cache: Map<string, KeyObject>, secret: string, decode: (s: string) => Buffer): KeyObject {
  let key = cache.get(secret);
  if (key) return key;
  key = createSecretKey(decode(secret)); // throws, uncached, as decodeSecret says
  if (cache.size >= MAX_KEYS) cache.clear();
  cache.set(secret, key);
  return key;
}
const toBuffer = (body: Buffer | string) => (typeof body === "string" ? Buffer.from(body) : body);
const fail = (reason: VerifyFailure): VerifyResult => ({ ok: false, reason });

const decodeBase64 = (s: string) => (BASE64.test(s) ? Buffer.from(s, "base64") : null);
const decodeHex = (s: string) => (/^(?:[0-9a-fA-F]{2})+$/.test(s) ? Buffer.from(s, "hex") : null);

/** One header value; a repeated id or timestamp header is ambiguous, so it counts as missing. */
function single(value: string | string[] | undefined): string | undefined {
  if (Array.isArray(value)) return value.length === 1 ? value[0] : undefined;
  return value;
}

/** Repeated `webhook-signature` headers are lists of entries: read them as one list. */
const joined = (value: string | string[] | undefined) => (Array.isArray(value) ? value.join(" ") : value);
