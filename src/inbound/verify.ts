/**
 * The signature check of an inbound request, per the configured scheme (SPEC §7). Nothing is
 * accepted unsigned: with no secret configured every request is refused, so a forgotten
 * OMS_WEBHOOK_SECRET cannot open the endpoint to anyone.
 */
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

/** The signed `webhook-id` (standard scheme), or undefined when the scheme has none. */
export type Verified = { signedId: string | undefined };

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
export function checkSignature(
  settings: InboundSettings,
  headers: IncomingHttpHeaders,
  raw: Buffer,
  now: Date,
  onestock: OnestockScheme = DEFAULT_ONESTOCK_SCHEME,
): Verified {
  if (settings.secrets.length === 0) {
    throw new HttpError(
      401,
      "no_secrets_configured",
      "server.inbound.secrets is empty, so no event can be verified; none is accepted unsigned",
    );
  }
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
    const [code, detail] = REFUSALS[result.reason];
    const expected =
      result.reason === "missing_headers" ? ` (expected ${HEADERS_BY_SCHEME[settings.scheme]})` : "";
    throw new HttpError(401, code, detail + expected);
  }
  return { signedId: settings.scheme === "standard" ? result.id : undefined };
}

const single = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join(",") : v);
