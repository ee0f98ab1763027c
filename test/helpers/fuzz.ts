/**
 * Malformed inbound requests from a seeded PRNG, for test/integration/inbound-fuzz.test.ts.
 * Each case names the statuses it may get; some bodies are signed validly so the checks after
 * the signature are reached. Cases that need bytes fetch refuses to send go over a raw socket.
 */
import { createHmac } from "node:crypto";

/**
 * Standard Webhooks v1 over the exact bytes, with node:crypto (the `standardwebhooks` package
 * decodes a Buffer body as UTF-8 first, so it cannot sign the invalid-UTF-8 cases byte for byte).
 */
class Signer {
  readonly #key: Buffer;
  constructor(secret: string) {
    this.#key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  }
  sign(msgId: string, at: Date, body: Buffer): string {
    const content = Buffer.concat([Buffer.from(`${msgId}.${Math.floor(at.getTime() / 1000)}.`), body]);
    return `v1,${createHmac("sha256", this.#key).update(content).digest("base64")}`;
  }
}

export type FuzzCase = {
  kind: string;
  /** Expected statuses. */
  expect: readonly number[];
  body?: Buffer;
  headers?: Record<string, string>;
  /** A whole HTTP/1.1 request, sent as bytes over a socket. */
  raw?: Buffer;
};

/** mulberry32: small, fast and deterministic for a given seed. */
export function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(items: readonly T[]): T => items[int(items.length)]!;
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  return { next, int, pick, bytes };
}
type Rng = ReturnType<typeof prng>;

export function fuzzCases(
  secret: string,
  maxBody: number,
  path: string,
  seed: number,
  n: number,
): FuzzCase[] {
  const rng = prng(seed);
  const g = generators(rng, new Signer(secret), maxBody, path);
  const kinds = Object.keys(g) as (keyof typeof g)[];
  return Array.from({ length: n }, (_, i) => g[kinds[i % kinds.length]!]());
}

const BAD_TYPES = [
  42,
  true,
  false,
  null,
  {},
  [],
  ["created"],
  "",
  " ",
  "a b",
  "*",
  "order.*",
  "a..b",
  ".a",
  "a.",
  "ü",
  "a/b",
  "x".repeat(101),
  "\u0000",
  "\ud800",
  "a\udc00b",
  "a\nb",
  "tab\t",
  "a\u0085b",
  "😀",
];
const BAD_IDS = [
  {},
  [],
  ["x"],
  true,
  false,
  1.5,
  -0.5,
  1e300,
  2 ** 53,
  "",
  "x".repeat(257),
  "\u0000",
  "a\u0000b",
  "\ud800",
  "\udfff tail",
  "a\u0085b",
  "\u001f",
  "\u007f",
  "line\nbreak",
];
const WRONG_TYPES = [
  "text/plain",
  "text/json",
  "application/xml",
  "application/x-www-form-urlencoded",
  "multipart/form-data; boundary=x",
  "application/jsonp",
  "application/json; charset=latin1",
  "application/json;charset=utf-16",
  "json",
  "application/*",
  "application/json, text/plain",
  "*/*",
  "APPLICATION/XML",
  "application/json+",
  "",
];
const BROKEN_JSON = [
  "",
  " ",
  "{",
  "}",
  "{}}",
  "{'type':'created'}",
  '{"type":"created",}',
  '{type:"created"}',
  "NaN",
  "undefined",
  '{"type":"created"} x',
  '{"type":"created" /* c */}',
  '{"type":"cre\u0000ated"}',
  '{"type":"a\nb"}',
  "\u0000",
  '{"type":"created","id":"x","data":{"order_id":"1"}',
  "[",
  '"unterminated',
  '{"a":01}',
  "\ufeff\ufeff{}",
];
const BAD_UTF8 = [
  [0xff],
  [0xc0, 0x80],
  [0xed, 0xa0, 0x80],
  [0xe2, 0x82],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
  [0x80],
];

function generators(rng: Rng, wh: Signer, maxBody: number, path: string) {
  let seq = 0;
  const id = () => `msg_fuzz${++seq}_${rng.int(1e9)}`;
  const event = (fields: Record<string, unknown> = {}) =>
    JSON.stringify({ id: `evt-${id()}`, type: "created", data: { order_id: "O-1" }, ...fields });
  const signed = (body: Buffer, extra: Record<string, string> = {}) => {
    const msgId = id();
    const now = new Date();
    return {
      "content-type": "application/json",
      "webhook-id": msgId,
      "webhook-timestamp": String(Math.floor(now.getTime() / 1000)),
      "webhook-signature": wh.sign(msgId, now, body),
      ...extra,
    };
  };
  const signedCase = (kind: string, body: Buffer, expect: number[] = [400]): FuzzCase => ({
    kind,
    expect,
    body,
    headers: signed(body),
  });
  const json = (text: string) => Buffer.from(text);

  return {
    brokenJson: () => {
      const valid = event();
      const text = rng.next() < 0.5 ? rng.pick(BROKEN_JSON) : valid.slice(0, rng.int(valid.length - 1));
      return signedCase("broken json", json(text));
    },
    randomBytes: () => signedCase("random bytes", Buffer.concat([json("{"), rng.bytes(1 + rng.int(200))])),
    notAnObject: () =>
      signedCase(
        "not an object",
        json(rng.pick(["[]", "null", "true", "42", '"created"', `[${event()}]`, "0.5"])),
      ),
    badType: () => {
      const value = rng.pick(BAD_TYPES);
      const fields = rng.next() < 0.5 ? { type: value } : { type: undefined, topic: value };
      return signedCase("bad type", json(event(fields)));
    },
    noType: () => signedCase("no type", json(event({ type: undefined, kind: "created" }))),
    badId: () => signedCase("bad id", json(event({ id: rng.pick(BAD_IDS) }))),
    badOrderId: () => signedCase("bad order id", json(event({ data: { order_id: rng.pick(BAD_IDS) } }))),
    badUtf8: () => {
      const text = event({ note: "@@" });
      const at = text.indexOf("@@");
      const body = Buffer.concat([
        json(text.slice(0, at)),
        Buffer.from(rng.pick(BAD_UTF8)),
        json(text.slice(at)),
      ]);
      return signedCase("invalid utf-8", body);
    },
    tooLarge: () => {
      const size = maxBody + 1 + rng.int(maxBody * 2);
      const body = json(event({ pad: "x".repeat(size) }));
      return rng.next() < 0.5
        ? signedCase("too large, signed", body, [413])
        : { kind: "too large", expect: [413], body, headers: { "content-type": "application/json" } };
    },
    wrongContentType: () => {
      const body = json(event());
      const type = rng.pick(WRONG_TYPES);
      const headers: Record<string, string> = signed(body);
      if (type === "") delete headers["content-type"];
      else headers["content-type"] = type;
      return { kind: "wrong content type", expect: [415], body, headers };
    },
    badSignature: () => badSignature(rng, json(event()), signed, wh),
    // an invalid type, so a request the HTTP layer lets through still cannot be stored
    injection: () => injection(rng, json(event({ type: "not a type" })), path, signed),
  };
}

type SignHeaders = (body: Buffer, extra?: Record<string, string>) => Record<string, string>;

function badSignature(rng: Rng, body: Buffer, signed: SignHeaders, wh: Signer): FuzzCase {
  const good = signed(body);
  const nowSec = Math.floor(Date.now() / 1000);
  const variants: Record<string, string>[] = [
    { "webhook-signature": "" },
    { "webhook-signature": `v1,${rng.bytes(32).toString("base64")}` },
    { "webhook-signature": good["webhook-signature"]!.replace("v1,", "v2,") },
    { "webhook-signature": "v1," },
    { "webhook-signature": `v1,${rng.bytes(16).toString("base64")}` },
    {
      "webhook-signature": rng
        .bytes(40)
        .toString("latin1")
        .replace(/[^\x21-\x7e]/g, "x"),
    },
    { "webhook-signature": `v1a,${good["webhook-signature"]!.slice(3)}` },
    { "webhook-timestamp": rng.pick(["abc", "-5", "1e9", "", "99999999999999", " 1", `${nowSec}.5`]) },
    { "webhook-timestamp": String(nowSec - 301 - rng.int(10_000)) },
    { "webhook-timestamp": String(nowSec + 301 + rng.int(10_000)) },
    { "webhook-id": rng.pick(["a.b", "", "x".repeat(300), "with space", "msg_other"]) },
    { "webhook-signature": wh.sign("msg_other", new Date(), body) },
  ];
  const headers: Record<string, string> = { ...good, ...rng.pick(variants) };
  if (rng.next() < 0.15) delete headers[rng.pick(["webhook-id", "webhook-timestamp", "webhook-signature"])];
  return { kind: "bad signature", expect: [401], body, headers };
}

/** Requests only a raw socket can send: CR/LF, NUL and non-Latin-1 in headers, conflicting lengths. */
function injection(rng: Rng, body: Buffer, path: string, signed: SignHeaders): FuzzCase {
  const h = signed(body);
  const line = (name: string, value: string) => `${name}: ${value}\r\n`;
  const base = Object.entries(h)
    .map(([k, v]) => line(k, v))
    .join("");
  const len = line("content-length", String(body.length));
  const variants: [string, number[]][] = [
    [`${line("webhook-id", "x\rinjected: 1")}${base}${len}`, [400]],
    [`${line("x-evil", "a\nwebhook-id: b")}${base}${len}`, [400, 401]],
    [`${line("x-nul", "a\u0000b")}${base}${len}`, [400]],
    [`${base}${len}${line("content-length", String(body.length + 5))}`, [400]],
    [`${base}${len}${line("transfer-encoding", "chunked")}`, [400]],
    [`${base}${len}${line("x-fold", "a")} folded\r\n`, [400]],
    [`${base}${len}${line("bad name", "x")}`, [400]],
    [`${base}${len}${line("x-long", "y".repeat(20_000))}`, [431, 400]],
    [`${base}${len}${line("webhook-id", "second")}`, [401]],
    [`${base.replace(/webhook-id: [^\r]*/, "webhook-id: ünïcødé")}${len}`, [400, 401]],
    [`${base.replace(/webhook-signature: [^\r]*/, "webhook-signature: v1,\u00ff\u00fe")}${len}`, [400, 401]],
    [`${base}${line("content-length", "-1")}`, [400]],
  ];
  const [headers, expect] = rng.pick(variants);
  const head = Buffer.from(
    `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n${headers}\r\n`,
    "latin1",
  );
  return { kind: "header injection", expect, raw: Buffer.concat([head, body]) };
}
