/**
 * The signature check of an inbound request, per the configured scheme (SPEC §7). Nothing is
 * accepted unsigned: with no secret configured every request is refused, so a forgotten
 * OMS_WEBHOOK_SECRET cannot open the endpoint to anyone.
 */
import { createHash } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";
import type { Config } from "../config/index.js";
import { HttpError } from "../http/errors.js";
import {
  DEFAULT_ONESTOCK_SCHEME,
  type OnestockScheme,
  type VerifyFailure,
  verifyOnestock,
  verifyStandard,
} from "../subscriptions/signing.js";

export type InboundSettings = Config["server"]["inbound"];

/**
 * The id the signature vouches for: the signed `webhook-id` (standard), or for OneStock, whose
 * header signs no id, one derived from the signed timestamp and body. A header anyone can change
 * (OneStock requests carrying `webhook-id`) must never name the event, or the same signed bytes
 * would be accepted again under each new name.
 */
export type Verified = { signedId: string };

const REFUSALS: Record<VerifyFailure, [code: string, detail: string]> = {
  missing_headers: ["signature_missing", "signature headers missing or malformed"],
  bad_timestamp: ["signature_invalid", "the signature timestamp is not unix seconds"],
  timestamp_too_old: ["timestamp_out_of_tolerance", "the signature timestamp is too old"],
  timestamp_too_new: ["timestamp_out_of_tolerance", "the signature timestamp is too far in the future"],
  no_matching_signature: ["signature_invalid", "no signature matches a configured secret"],
};

const HEADERS_BY_SCHEME = {
  standard: "webhook-id, webhook-timestamp and webhook-signature",
  onestock: "Onestock-Signature",
} as const;

/** Throws HttpError(401) unless the request is signed with a configured secret within the tolerance. */
/**
 * The checks that need no body: a secret configured, the signature headers present and the
 * timestamp within tolerance. Run before the body is read, so a caller who cannot even get these
 * right costs no memory and no wait for a (slow) body.
 */
export function checkSignatureHeaders(
  settings: InboundSettings,
  headers: IncomingHttpHeaders,
  now: Date,
  onestock: OnestockScheme = DEFAULT_ONESTOCK_SCHEME,
): void {
  if (settings.secrets.length === 0) throw noSecrets();
  // with no secret to match, a request whose headers pass ends at "no_matching_signature"
  checkSignature({ ...settings, secrets: [] }, headers, Buffer.alloc(0), now, onestock, true);
}

const noSecrets = () =>
  new HttpError(
    401,
    "no_secrets_configured",
    "server.inbound.secrets is empty, so no event can be verified; none is accepted unsigned",
  );

export function checkSignature(
  settings: InboundSettings,
  headers: IncomingHttpHeaders,
  raw: Buffer,
  now: Date,
  onestock: OnestockScheme = DEFAULT_ONESTOCK_SCHEME,
  headersOnly = false,
): Verified {
  if (settings.secrets.length === 0 && !headersOnly) throw noSecrets();
  const nowSec = Math.floor(now.getTime() / 1000);
  const toleranceSec = Math.floor(settings.tolerance / 1000);
  const result =
    settings.scheme === "standard"
      ? verifyStandard(headers, raw, settings.secrets, nowSec, toleranceSec)
      : verifyOnestock(
          single(headers["onestock-signature"]),
          raw,
          settings.secrets,
          nowSec,
          toleranceSec,
          onestock,
        );
  if (!result.ok) {
    if (headersOnly && result.reason === "no_matching_signature") return { signedId: "" };
    const [code, detail] = REFUSALS[result.reason];
    const expected =
      result.reason === "missing_headers" ? ` (expected ${HEADERS_BY_SCHEME[settings.scheme]})` : "";
    throw new HttpError(401, code, detail + expected);
  }
  return { signedId: settings.scheme === "standard" ? result.id : onestockId(result.timestamp, raw) };
}

/** A OneStock event's id when its body has none: a hash of what the signature covers. */
const onestockId = (t: number, raw: Buffer) =>
  `os_${createHash("sha256").update(`${t}.`).update(raw).digest("hex").slice(0, 40)}`;

const single = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join(",") : v);
