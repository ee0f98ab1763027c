import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { HttpError } from "../../src/http/errors.ts";
import { checkSignature, type InboundSettings } from "../../src/inbound/verify.ts";
import { signatureHeaders, signOnestock } from "../../src/subscriptions/signing.ts";

// The refusal each failure gives the OMS (SPEC §7): status, code and detail, per scheme.
const NOW = new Date("2026-01-01T12:00:00.900Z");
const T = Math.floor(NOW.getTime() / 1000);
const SECRET = `whsec_${randomBytes(32).toString("base64")}`;
const KEY = "onestock-shared-key";
const BODY = Buffer.from('{"id":"evt_1"}');

const standard: InboundSettings = {
  scheme: "standard",
  secrets: [SECRET],
  tolerance: 300_000,
} as InboundSettings;
const onestock: InboundSettings = {
  scheme: "onestock",
  secrets: [KEY],
  tolerance: 300_000,
} as InboundSettings;

function refusal(fn: () => unknown): Pick<HttpError, "status" | "code" | "detail"> {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(HttpError);
    const { status, code, detail } = err as HttpError;
    return { status, code, detail };
  }
  throw new Error("accepted");
}

describe("checkSignature", () => {
  it("accepts a standard signature within the tolerance and returns the signed webhook-id", () => {
    const headers = signatureHeaders([SECRET], "msg_1", T, BODY);
    expect(checkSignature(standard, headers, BODY, NOW)).toEqual({ signedId: "msg_1" });
    // 300 s either side (seconds floored: the tolerance is whole seconds)
    expect(checkSignature(standard, signatureHeaders([SECRET], "msg_1", T - 300, BODY), BODY, NOW)).toEqual({
      signedId: "msg_1",
    });
    expect(checkSignature(standard, signatureHeaders([SECRET], "msg_1", T + 300, BODY), BODY, NOW)).toEqual({
      signedId: "msg_1",
    });
  });

  it("accepts a onestock signature; its id comes from the signed material, not a header", () => {
    const headers = { "onestock-signature": signOnestock([KEY], T, BODY) };
    const { signedId } = checkSignature(onestock, headers, BODY, NOW) as { signedId: string };
    expect(signedId).toMatch(/\S{8,}/);
    // a header sent twice is read as one list, and the same signed bytes give the same id
    const twice = { "onestock-signature": [`t=${T}`, signOnestock([KEY], T, BODY).split(",")[1]!] };
    expect(checkSignature(onestock, twice, BODY, NOW)).toEqual({ signedId });
  });

  it("refuses everything when no secret is configured", () => {
    const none = { ...standard, secrets: [] } as InboundSettings;
    expect(refusal(() => checkSignature(none, signatureHeaders([SECRET], "m", T, BODY), BODY, NOW))).toEqual({
      status: 401,
      code: "no_secrets_configured",
      detail: "server.inbound.secrets is empty, so no event can be verified; none is accepted unsigned",
    });
  });

  it.each([
    [
      "standard headers missing",
      standard,
      {},
      "signature_missing",
      "signature headers missing or malformed (expected webhook-id, webhook-timestamp and webhook-signature)",
    ],
    [
      "onestock header missing",
      onestock,
      {},
      "signature_missing",
      "signature headers missing or malformed (expected Onestock-Signature)",
    ],
    [
      "a timestamp that is not unix seconds",
      standard,
      { ...signatureHeaders([SECRET], "m", T, BODY), "webhook-timestamp": "soon" },
      "signature_invalid",
      "the signature timestamp is not unix seconds",
    ],
    [
      "301 s old",
      standard,
      signatureHeaders([SECRET], "m", T - 301, BODY),
      "timestamp_out_of_tolerance",
      "the signature timestamp is too old",
    ],
    [
      "301 s ahead",
      standard,
      signatureHeaders([SECRET], "m", T + 301, BODY),
      "timestamp_out_of_tolerance",
      "the signature timestamp is too far in the future",
    ],
    [
      "another secret",
      standard,
      signatureHeaders([`whsec_${randomBytes(32).toString("base64")}`], "m", T, BODY),
      "signature_invalid",
      "no signature matches a configured secret",
    ],
    [
      "onestock, another key",
      onestock,
      { "onestock-signature": signOnestock(["other"], T, BODY) },
      "signature_invalid",
      "no signature matches a configured secret",
    ],
  ] as const)("%s: 401 with its code and detail", (_, settings, headers, code, detail) => {
    expect(refusal(() => checkSignature(settings, headers, BODY, NOW))).toEqual({
      status: 401,
      code,
      detail,
    });
  });
});
