import { readFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { errors, fetch, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AttemptResult, classifyError, decide, parseRetryAfter } from "../../src/outbox/retry.ts";
import { REFUSED_PORT } from "../helpers/receiver.js";

const NOW = new Date("2025-06-01T12:00:00Z");
const INTERVALS = [30_000, 60_000, 300_000];
const MID = () => 0.5; // no jitter
const LOW = () => 0;
const HIGH = () => 0.999_999_999;

const response = (status: number, retryAfter?: string | null): AttemptResult => ({
  kind: "response",
  status,
  retryAfter,
});

describe("decide", () => {
  it.each([200, 202, 204])("HTTP %i is delivered, even after the schedule", (status) => {
    expect(decide(response(status), 1, INTERVALS, NOW, MID)).toEqual({ kind: "delivered" });
    expect(decide(response(status), 9, INTERVALS, NOW, MID)).toEqual({ kind: "delivered" });
  });

  it("HTTP 410 is gone at once, whatever the attempt, and never due again before a retry would be", () => {
    expect(decide(response(410), 1, INTERVALS, NOW, MID)).toEqual({ kind: "gone", delayMs: 30_000 });
    expect(decide(response(410), 2, INTERVALS, NOW, LOW)).toEqual({ kind: "gone", delayMs: 48_000 });
    // past the schedule the message is still kept (a 410 is not its fault): the last interval
    expect(decide(response(410), 4, INTERVALS, NOW, MID)).toEqual({ kind: "gone", delayMs: 300_000 });
  });

  it.each([301, 302, 400, 404, 429, 500, 503])("HTTP %i retries on the schedule, then is dead", (status) => {
    expect(decide(response(status), 1, INTERVALS, NOW, MID)).toEqual({ kind: "retry", delayMs: 30_000 });
    expect(decide(response(status), 2, INTERVALS, NOW, MID)).toEqual({ kind: "retry", delayMs: 60_000 });
    expect(decide(response(status), 3, INTERVALS, NOW, MID)).toEqual({ kind: "retry", delayMs: 300_000 });
    expect(decide(response(status), 4, INTERVALS, NOW, MID)).toEqual({ kind: "dead" });
  });

  it("jitters each interval within ±20%", () => {
    expect(decide(response(500), 1, INTERVALS, NOW, LOW)).toEqual({ kind: "retry", delayMs: 24_000 });
    expect(decide(response(500), 1, INTERVALS, NOW, HIGH)).toEqual({ kind: "retry", delayMs: 36_000 });
    for (let i = 0; i < 200; i++) {
      const d = decide(response(500), 2, INTERVALS, NOW, Math.random);
      expect(d.kind).toBe("retry");
      if (d.kind === "retry") expect(d.delayMs).toBeGreaterThanOrEqual(48_000);
      if (d.kind === "retry") expect(d.delayMs).toBeLessThanOrEqual(72_000);
    }
  });

  it.each([429, 503])("HTTP %i waits at least the Retry-After hint, in seconds or as a date", (status) => {
    const inNinety = new Date(NOW.getTime() + 90_000).toUTCString();
    expect(decide(response(status, "120"), 1, INTERVALS, NOW, MID)).toEqual({
      kind: "retry",
      throttled: true,
      delayMs: 120_000,
    });
    expect(decide(response(status, inNinety), 1, INTERVALS, NOW, HIGH)).toEqual({
      kind: "retry",
      throttled: true,
      delayMs: 90_000,
    });
    // jitter never brings the delay below the hint
    expect(decide(response(status, "70"), 2, INTERVALS, NOW, LOW)).toEqual({
      kind: "retry",
      throttled: true,
      delayMs: 70_000,
    });
    // a hint shorter than the schedule does not shorten it
    expect(decide(response(status, "1"), 1, INTERVALS, NOW, MID)).toEqual({
      kind: "retry",
      delayMs: 30_000,
      throttled: true,
    });
  });

  it("caps the hint at the last interval", () => {
    expect(decide(response(429, "86400"), 1, INTERVALS, NOW, MID)).toEqual({
      kind: "retry",
      throttled: true,
      delayMs: 300_000,
    });
    const nextWeek = new Date(NOW.getTime() + 7 * 86_400_000).toUTCString();
    expect(decide(response(503, nextWeek), 1, INTERVALS, NOW, LOW)).toEqual({
      kind: "retry",
      throttled: true,
      delayMs: 300_000,
    });
    // the scheduled delay itself may still jitter above the capped hint
    expect(decide(response(429, "86400"), 3, INTERVALS, NOW, HIGH)).toEqual({
      kind: "retry",
      throttled: true,
      delayMs: 360_000,
    });
  });

  it("ignores Retry-After on other statuses, and garbage or past hints", () => {
    expect(decide(response(500, "600"), 1, INTERVALS, NOW, MID)).toEqual({ kind: "retry", delayMs: 30_000 });
    expect(decide(response(429, "soon"), 1, INTERVALS, NOW, MID)).toEqual({ kind: "retry", delayMs: 30_000 });
    // a date in the past is still the receiver asking for a pause: throttled, on the schedule
    expect(decide(response(429, "Wed, 21 Oct 2015 07:28:00 GMT"), 1, INTERVALS, NOW, MID)).toEqual({
      kind: "retry",
      delayMs: 30_000,
      throttled: true,
    });
    expect(decide(response(429, null), 1, INTERVALS, NOW, MID)).toEqual({ kind: "retry", delayMs: 30_000 });
  });

  it("is never dead for throttling: past the schedule a Retry-After waits the last interval at most", () => {
    expect(decide(response(429, "5"), 4, INTERVALS, NOW, MID)).toEqual({
      kind: "retry",
      delayMs: 300_000,
      throttled: true,
    });
    expect(decide(response(503, "5"), 9, [1000], NOW, MID)).toEqual({
      kind: "retry",
      delayMs: 1000,
      throttled: true,
    });
  });

  it.each(["timeout", "connect", "network", "tls", "file", "mail", "other"] as const)(
    "a %s error is never dead before the schedule ends",
    (errorClass) => {
      const result: AttemptResult = { kind: "error", errorClass, message: "x" };
      for (let attempt = 1; attempt <= INTERVALS.length; attempt++) {
        expect(decide(result, attempt, INTERVALS, NOW, MID)).toEqual({
          kind: "retry",
          delayMs: INTERVALS[attempt - 1],
        });
      }
      expect(decide(result, INTERVALS.length + 1, INTERVALS, NOW, MID)).toEqual({ kind: "dead" });
    },
  );

  it("works with a one-interval schedule", () => {
    expect(decide(response(500), 1, [1], NOW, MID)).toEqual({ kind: "retry", delayMs: 1 });
    expect(decide(response(500), 2, [1], NOW, MID)).toEqual({ kind: "dead" });
  });
});

describe("parseRetryAfter", () => {
  it.each<[string | null | undefined, number | null]>([
    ["120", 120_000],
    ["0", 0],
    [" 5 ", 5_000],
    ["Sun, 01 Jun 2025 12:01:30 GMT", 90_000],
    ["Sunday, 01-Jun-25 12:01:30 GMT", 90_000],
    ["Sun Jun  1 12:01:30 2025", 90_000],
    ["Wed, 21 Oct 2015 07:28:00 GMT", 0],
    ["soon", null],
    ["-5", null],
    ["1.5", null],
    ["120s", null],
    ["", null],
    [null, null],
    [undefined, null],
    ["Sat, 31 Feb 2025 07:28:00 GMT", null],
    ["Sun, 01 Jun 2025 25:00:00 GMT", null],
    ["2025-06-01T12:01:30Z", null],
  ])("%j → %j", (value, expected) => {
    expect(parseRetryAfter(value, NOW)).toBe(expected);
  });

  // Mutation testing (docs/testing.md): each month name, the edges of the time fields, a
  // two-digit year exactly 50 years ahead.
  it.each(
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"].map((m, i) => [
      m,
      i,
    ]),
  )("reads the month %s", (mon, i) => {
    const before = new Date("2025-12-31T00:00:00Z");
    expect(parseRetryAfter(`Thu, 01 ${mon} 2026 00:00:00 GMT`, before)).toBe(
      Date.UTC(2026, i as number, 1) - before.getTime(),
    );
  });

  it("accepts second 60 (a leap second), refuses minute 60 and second 61", () => {
    expect(parseRetryAfter("Sun, 01 Jun 2025 12:01:60 GMT", NOW)).toBe(120_000); // read as 12:02:00
    expect(parseRetryAfter("Sun, 01 Jun 2025 12:60:00 GMT", NOW)).toBeNull();
    expect(parseRetryAfter("Sun, 01 Jun 2025 12:01:61 GMT", NOW)).toBeNull();
  });

  it("reads a two-digit year exactly 50 years ahead as that year, 51 ahead as a century earlier", () => {
    // NOW is 2025: -75 is 2075 (not more than 50 years ahead), -76 is 1976 (in the past: 0)
    expect(parseRetryAfter("Saturday, 01-Jun-75 12:00:00 GMT", NOW)).toBe(
      Date.UTC(2075, 5, 1, 12) - NOW.getTime(),
    );
    expect(parseRetryAfter("Monday, 01-Jun-76 12:00:00 GMT", NOW)).toBe(0);
  });
});

describe("decide: the edges of 2xx", () => {
  it.each([199, 300, 301])("HTTP %i is not delivered", (status) => {
    expect(decide(response(status), 1, INTERVALS, NOW, MID)).toEqual({ kind: "retry", delayMs: 30_000 });
  });
});

describe("classifyError", () => {
  let silent: Server;
  let hangup: Server;
  const closedPort = REFUSED_PORT; // refuses connections, and no parallel test can take it
  const port = (s: Server) => (s.address() as AddressInfo).port;
  const caught = async (p: Promise<unknown>) =>
    p.then(
      () => expect.unreachable(),
      (err: unknown) => err,
    );

  beforeAll(async () => {
    silent = createServer(() => {}); // never answers
    hangup = createServer((req) => req.socket.destroy());
    await Promise.all([silent, hangup].map((s) => new Promise<void>((ok) => s.listen(0, "127.0.0.1", ok))));
  });
  afterAll(() => {
    for (const s of [silent, hangup]) {
      s.closeAllConnections();
      s.close();
    }
  });

  it("classifies a real connection refusal as connect, through fetch's wrapper too", async () => {
    const direct = classifyError(await caught(request(`http://127.0.0.1:${closedPort}/`)));
    expect(direct.errorClass).toBe("connect");
    expect(direct.message).toContain("ECONNREFUSED");
    const wrapped = classifyError(await caught(fetch(`http://127.0.0.1:${closedPort}/`)));
    expect(wrapped).toEqual({
      errorClass: "connect",
      message: expect.stringMatching(/^fetch failed: .*ECONNREFUSED/),
    });
  });

  it("classifies real timeouts against a server that never answers", async () => {
    const url = `http://127.0.0.1:${port(silent)}/`;
    const headers = classifyError(await caught(request(url, { headersTimeout: 300 })));
    expect(headers.errorClass).toBe("timeout");
    const aborted = classifyError(await caught(fetch(url, { signal: AbortSignal.timeout(300) })));
    expect(aborted.errorClass).toBe("timeout");
  });

  it("classifies a real hang-up as network", async () => {
    const err = await caught(request(`http://127.0.0.1:${port(hangup)}/`));
    expect((err as { code?: string }).code).toBe("UND_ERR_SOCKET");
    expect(classifyError(err).errorClass).toBe("network");
  });

  it("classifies a real TLS failure (https to a plain HTTP server) as tls", async () => {
    const err = await caught(
      fetch(`https://127.0.0.1:${port(silent)}/`, { signal: AbortSignal.timeout(5_000) }),
    );
    expect(classifyError(err).errorClass).toBe("tls");
  });

  it("classifies a real file error as file", async () => {
    const err = await caught(readFile("/nonexistent/stock-sync/out.csv"));
    expect(classifyError(err)).toEqual({ errorClass: "file", message: expect.stringContaining("ENOENT") });
  });

  const coded = (code: string, message = code) => Object.assign(new Error(message), { code });

  it.each([
    [new errors.ConnectTimeoutError(), "timeout"],
    [new errors.HeadersTimeoutError(), "timeout"],
    [new errors.BodyTimeoutError(), "timeout"],
    [new DOMException("The operation was aborted", "AbortError"), "timeout"],
    [coded("ENOTFOUND"), "connect"],
    [coded("EAI_AGAIN"), "connect"],
    [coded("EHOSTUNREACH"), "connect"],
    [Object.assign(new AggregateError([coded("ECONNREFUSED")], ""), { code: "ECONNREFUSED" }), "connect"],
    [coded("ECONNRESET"), "network"],
    [coded("EPIPE"), "network"],
    [new errors.SocketError("other side closed"), "network"],
    [coded("ERR_TLS_CERT_ALTNAME_INVALID"), "tls"],
    [coded("CERT_HAS_EXPIRED"), "tls"],
    [coded("DEPTH_ZERO_SELF_SIGNED_CERT"), "tls"],
    [coded("UNABLE_TO_VERIFY_LEAF_SIGNATURE"), "tls"],
    [new TypeError("fetch failed", { cause: coded("SELF_SIGNED_CERT_IN_CHAIN") }), "tls"],
    [Object.assign(coded("EENVELOPE"), { responseCode: 550 }), "mail"],
    [new Error("boom"), "other"],
    ["a thrown string", "other"],
    [undefined, "other"],
  ])("classifies %o as %s", (err, expected) => {
    const result = classifyError(err);
    expect(result.errorClass).toBe(expected);
    expect(result.message).not.toBe("");
  });

  it("keeps URL credentials and secrets out of the message", () => {
    const err = new TypeError("fetch failed", {
      cause: coded(
        "ENOTFOUND",
        "getaddrinfo ENOTFOUND https://user:hunter2@oms.example.com/stock?token=abc123",
      ),
    });
    const { message } = classifyError(err);
    expect(message).toContain("ENOTFOUND");
    expect(message).not.toMatch(/hunter2|abc123/);
  });

  it.each([
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
  ])("classifies nodemailer's %s as mail", (code) => {
    expect(classifyError(coded(code)).errorClass).toBe("mail");
  });

  it.each([
    ["EPROTO", "tls"],
    ["ERR_SSL_WRONG_VERSION_NUMBER", "tls"],
    // the TLS pattern's prefixes are anchored: a code that merely contains one is not TLS
    ["EPROTONOSUPPORT", "other"],
    ["XERR_TLS_SOMETHING", "other"],
    ["XERR_SSL_SOMETHING", "other"],
  ])("classifies code %s as %s", (code, expected) => {
    expect(classifyError(coded(code)).errorClass).toBe(expected);
  });

  it("tells a mail server's answer and a file error by their fields, not by one alone", () => {
    expect(
      classifyError(Object.assign(new Error("550 no such user"), { responseCode: 550 })).errorClass,
    ).toBe("mail");
    expect(
      classifyError(Object.assign(new Error("550 no such user"), { responseCode: "550" })).errorClass,
    ).toBe("other");
    expect(classifyError(Object.assign(new Error("gone"), { path: "/x", syscall: "open" })).errorClass).toBe(
      "file",
    );
    expect(classifyError(Object.assign(new Error("gone"), { path: "/x" })).errorClass).toBe("other");
    expect(classifyError(Object.assign(new Error("gone"), { syscall: "connect" })).errorClass).toBe("other");
  });

  it("looks into an AggregateError's errors", () => {
    expect(
      classifyError(new AggregateError([new Error("first"), coded("ECONNREFUSED")], "all failed")),
    ).toEqual({
      errorClass: "connect",
      message: "all failed: first: ECONNREFUSED",
    });
  });

  it("joins the chain's messages once each, trimmed, skipping empty ones; a bare value as itself", () => {
    expect(classifyError(new Error(" outer ", { cause: new Error("outer") })).message).toBe("outer");
    expect(classifyError(new Error("", { cause: new Error("inner") })).message).toBe("inner");
    expect(classifyError(new Error("a", { cause: new Error("b", { cause: new Error("a") }) })).message).toBe(
      "a: b",
    );
    expect(classifyError("a thrown string").message).toBe("a thrown string");
    expect(classifyError(Object.assign(new Error(""), { message: 42 })).message).toBe("Error: 42");
  });

  it("cuts the message at 500 characters", () => {
    expect(classifyError(new Error("x".repeat(600))).message).toBe("x".repeat(500));
  });

  it("reads ten errors of a chain, no more", () => {
    const chain = (depth: number) => {
      // the innermost one is a refused connection, `depth` wrappers out
      let err: Error = coded("ECONNREFUSED");
      for (let i = depth; i > 0; i--) err = new Error(`wrapper ${i}`, { cause: err });
      return err;
    };
    expect(classifyError(chain(9)).errorClass).toBe("connect"); // the tenth
    expect(classifyError(chain(10)).errorClass).toBe("other"); // the eleventh
    expect(classifyError(chain(10)).message.split(": ")).toHaveLength(10);
  });

  it("skips a null cause", () => {
    expect(classifyError(new Error("x", { cause: null }))).toEqual({ errorClass: "other", message: "x" });
  });

  it("survives a cause cycle", () => {
    const a = new Error("a");
    const b = new Error("b", { cause: a });
    Object.assign(a, { cause: b });
    expect(classifyError(a)).toEqual({ errorClass: "other", message: "a: b" });
  });
});
