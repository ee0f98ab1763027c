import { createHmac, randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { ConnectorError } from "../../src/errors.ts";
import {
  DEFAULT_ONESTOCK_SCHEME,
  decodeSecret,
  type OnestockScheme,
  sign,
  signatureHeaders,
  signOnestock,
  verifyOnestock,
  verifyStandard,
} from "../../src/subscriptions/signing.ts";

const whsec = () => `whsec_${randomBytes(32).toString("base64")}`;
const SECRET_A = whsec();
const SECRET_B = whsec();
const FOREIGN = whsec();
const ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W";
const BODY = '{"type":"stock.delta","data":{"sku":"A-1","quantity":7}}';
const TOLERANCE = 300;
// standardwebhooks checks the timestamp against the real clock, so these tests use it too
const nowSec = () => Math.floor(Date.now() / 1000);

function headersFor(secrets: string[], ts = nowSec(), id = ID, body: Buffer | string = BODY) {
  return signatureHeaders(secrets, id, ts, body);
}

describe("sign", () => {
  it("is verified by the standardwebhooks package, one secret at a time", () => {
    const headers = headersFor([SECRET_A, SECRET_B]);
    expect(headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]{43}= v1,[A-Za-z0-9+/]{43}=$/);
    expect(new Webhook(SECRET_A).verify(BODY, headers)).toEqual(JSON.parse(BODY));
    expect(new Webhook(SECRET_B).verify(BODY, headers)).toEqual(JSON.parse(BODY));
    expect(() => new Webhook(FOREIGN).verify(BODY, headers)).toThrow(/No matching signature/);
  });

  it("keeps the secrets' order", () => {
    const ts = nowSec();
    const [a, b] = sign([SECRET_A, SECRET_B], ID, ts, BODY).split(" ");
    expect(a).toBe(sign([SECRET_A], ID, ts, BODY));
    expect(b).toBe(sign([SECRET_B], ID, ts, BODY));
  });

  it("signs the exact bytes of a binary (gzip) body", () => {
    const body = gzipSync(Buffer.from("sku,location,quantity\nA-1,store-1,7\n"));
    const ts = 1_700_000_000;
    const expected = createHmac("sha256", decodeSecret(SECRET_A))
      .update(Buffer.concat([Buffer.from(`${ID}.${ts}.`), body]))
      .digest("base64");
    expect(sign([SECRET_A], ID, ts, body)).toBe(`v1,${expected}`);
    const headers = signatureHeaders([SECRET_A], ID, ts, body);
    expect(verifyStandard(headers, body, [SECRET_A], ts, TOLERANCE)).toEqual({
      ok: true,
      id: ID,
      timestamp: ts,
    });
  });

  it("signs a string body as its UTF-8 bytes", () => {
    const body = '{"name":"Crème brûlée"}';
    expect(sign([SECRET_A], ID, 1, body)).toBe(sign([SECRET_A], ID, 1, Buffer.from(body, "utf8")));
  });

  it("refuses a timestamp that is not whole unix seconds", () => {
    expect(() => sign([SECRET_A], ID, 1.5, BODY)).toThrow(ConnectorError);
    expect(() => sign([SECRET_A], ID, -1, BODY)).toThrow(/unix seconds/);
    expect(() => sign([SECRET_A], ID, Number.NaN, BODY)).toThrow(/unix seconds/);
  });
});

describe("signatureHeaders", () => {
  it("sends id and timestamp always, and a signature only with secrets", () => {
    expect(signatureHeaders([], ID, 1_700_000_000, BODY)).toEqual({
      "webhook-id": ID,
      "webhook-timestamp": "1700000000",
    });
    expect(Object.keys(signatureHeaders([SECRET_A], ID, 1, BODY)).sort()).toEqual([
      "webhook-id",
      "webhook-signature",
      "webhook-timestamp",
    ]);
  });
});

describe("decodeSecret", () => {
  it("decodes with or without the whsec_ prefix", () => {
    const raw = randomBytes(24);
    expect(decodeSecret(`whsec_${raw.toString("base64")}`)).toEqual(raw);
    expect(decodeSecret(raw.toString("base64"))).toEqual(raw);
  });

  it.each(["", "whsec_", "whsec_not base64!", "whsec_ÿÿÿÿ"])("rejects %j without quoting it", (bad) => {
    try {
      decodeSecret(bad);
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConnectorError);
      expect((err as ConnectorError).code).toBe("CONFIG_INVALID");
      if (bad.length > 6) expect((err as Error).message).not.toContain(bad.slice(6));
    }
  });
});

describe("verifyStandard", () => {
  const now = 1_700_000_000;
  const body = Buffer.from(BODY);
  const wh = new Webhook(SECRET_A);
  const v1 = wh.sign(ID, new Date(now * 1000), BODY);
  const signed = (over: Record<string, string | undefined> = {}) => ({
    "webhook-id": ID,
    "webhook-timestamp": String(now),
    "webhook-signature": v1,
    ...over,
  });
  const verify = (headers: Record<string, string | string[] | undefined>, raw = body, secrets = [SECRET_A]) =>
    verifyStandard(headers, raw, secrets, now, TOLERANCE);

  it("accepts a signature made by the standardwebhooks package", () => {
    expect(verify(signed())).toEqual({ ok: true, id: ID, timestamp: now });
  });

  it("accepts any v1 entry against any secret, and skips other versions", () => {
    const mixed = signed({ "webhook-signature": `v1a,${randomBytes(64).toString("base64")} ${v1}` });
    expect(verify(mixed, body, [SECRET_B, SECRET_A]).ok).toBe(true);
    // a valid MAC under another version label is not a v1 signature
    expect(verify(signed({ "webhook-signature": v1.replace("v1,", "v1a,") }))).toEqual({
      ok: false,
      reason: "no_matching_signature",
    });
    // rotation on the sender's side: two signatures, the receiver knows either secret
    const rotated = signatureHeaders([SECRET_B, SECRET_A], ID, now, body);
    expect(verify(rotated, body, [SECRET_A]).ok).toBe(true);
    expect(verify(rotated, body, [SECRET_B]).ok).toBe(true);
    // rotation on the receiver's side: new and old secrets configured
    expect(verify(signed(), body, [SECRET_B, SECRET_A]).ok).toBe(true);
  });

  it("reads repeated signature headers as one list", () => {
    expect(verify({ ...signed(), "webhook-signature": ["v1,AAAA", v1] }).ok).toBe(true);
  });

  const flip = (s: string, i: number) =>
    s.slice(0, i) + String.fromCharCode(s.charCodeAt(i) ^ 1) + s.slice(i + 1);

  it.each([
    ["id", () => verify(signed({ "webhook-id": flip(ID, 5) }))],
    [
      "timestamp",
      () => verifyStandard(signed({ "webhook-timestamp": String(now + 1) }), body, [SECRET_A], now, 300),
    ],
    ["body", () => verify(signed(), Buffer.from(flip(BODY, 20)))],
    ["signature", () => verify(signed({ "webhook-signature": flip(v1, 10) }))],
    ["secret from elsewhere", () => verify(signed(), body, [FOREIGN])],
    ["no secrets configured", () => verify(signed(), body, [])],
    ["truncated signature", () => verify(signed({ "webhook-signature": v1.slice(0, 20) }))],
  ])("rejects a changed %s", (_what, run) => {
    expect(run()).toEqual({ ok: false, reason: "no_matching_signature" });
  });

  it("rejects a timestamp outside the tolerance, both ways", () => {
    const at = (ts: number) =>
      verifyStandard(signatureHeaders([SECRET_A], ID, ts, body), body, [SECRET_A], now, 300);
    expect(at(now - 360)).toEqual({ ok: false, reason: "timestamp_too_old" });
    expect(at(now + 360)).toEqual({ ok: false, reason: "timestamp_too_new" });
    expect(at(now - 300).ok).toBe(true);
    expect(at(now + 300).ok).toBe(true);
  });

  it.each(["webhook-id", "webhook-timestamp", "webhook-signature"])("rejects a missing %s", (name) => {
    expect(verify(signed({ [name]: undefined }))).toEqual({ ok: false, reason: "missing_headers" });
    expect(verify(signed({ [name]: "" }))).toEqual({ ok: false, reason: "missing_headers" });
  });

  it.each(["msg.1", "msg 1", "x".repeat(257)])("treats the malformed id %j as missing", (id) => {
    expect(verify(signed({ "webhook-id": id }))).toEqual({ ok: false, reason: "missing_headers" });
  });

  it("treats a repeated id header as missing", () => {
    expect(verify({ ...signed(), "webhook-id": [ID, ID] })).toEqual({ ok: false, reason: "missing_headers" });
  });

  it.each(["12a", "1.7e9", "-1", " 1700000000", "1700000000.5", "0x65"])("rejects the timestamp %j", (ts) => {
    expect(verify(signed({ "webhook-timestamp": ts }))).toEqual({ ok: false, reason: "bad_timestamp" });
  });
});

describe("OneStock", () => {
  const now = 1_700_000_000;
  const body = Buffer.from('{"topic":"order_state_changed","id":"evt-1"}');
  const verify = (
    header: string | undefined,
    keys: string[],
    raw = body,
    nowSec = now,
    scheme?: OnestockScheme,
  ) => verifyOnestock(header, raw, keys, nowSec, TOLERANCE, scheme);

  it("signs t.body with each key as hex, newest first", () => {
    const header = signOnestock(["new-key", "old-key"], now, body);
    const mac = (key: string) => createHmac("sha256", key).update(`${now}.`).update(body).digest("hex");
    expect(header).toBe(`t=${now},h0=${mac("new-key")},h1=${mac("old-key")}`);
    expect(DEFAULT_ONESTOCK_SCHEME).toEqual({ signed: "timestamp.body", encoding: "hex" });
  });

  it("round-trips, and any configured key may match any hN", () => {
    const header = signOnestock(["new-key", "old-key"], now, body);
    expect(verify(header, ["new-key"])).toEqual({ ok: true, id: "", timestamp: now });
    // h1 matches the older key, the only one this receiver still has
    expect(verify(header, ["old-key"])).toEqual({ ok: true, id: "", timestamp: now });
    expect(verify(header, ["newest-key", "old-key"]).ok).toBe(true);
    expect(verify(header, ["other-key"])).toEqual({ ok: false, reason: "no_matching_signature" });
  });

  it("rejects a tampered body and a stale or future t", () => {
    const header = signOnestock(["k"], now, body);
    expect(verify(header, ["k"], Buffer.from(body.toString().replace("evt-1", "evt-2")))).toEqual({
      ok: false,
      reason: "no_matching_signature",
    });
    expect(verify(signOnestock(["k"], now - 360, body), ["k"])).toEqual({
      ok: false,
      reason: "timestamp_too_old",
    });
    expect(verify(signOnestock(["k"], now + 360, body), ["k"])).toEqual({
      ok: false,
      reason: "timestamp_too_new",
    });
    // t is signed: moving it into the window breaks the signature
    expect(verify(header.replace(`t=${now}`, `t=${now + 1}`), ["k"]).ok).toBe(false);
  });

  it.each([undefined, "", "h0=abcd", `t=${now}`, "garbage"])("reports %j as missing", (header) => {
    expect(verify(header, ["k"])).toEqual({ ok: false, reason: "missing_headers" });
  });

  it("rejects a malformed t", () => {
    expect(verify("t=17e8,h0=00", ["k"])).toEqual({ ok: false, reason: "bad_timestamp" });
  });

  it("reads the separators OneStock's own example mixes", () => {
    const header = signOnestock(["k1", "k2"], now, body);
    expect(verify(header.replace(",h0=", ".h0=").replace(",h1=", ", h1="), ["k2"]).ok).toBe(true);
  });

  it.each<OnestockScheme>([
    { signed: "timestamp", encoding: "hex" },
    { signed: "timestamp.body", encoding: "base64" },
    { signed: "timestamp", encoding: "base64" },
  ])("supports the scheme %j, and only under that scheme", (scheme) => {
    const header = signOnestock(["k"], now, body, scheme);
    expect(verify(header, ["k"], body, now, scheme).ok).toBe(true);
    expect(verify(header, ["k"]).ok).toBe(false);
  });
});
