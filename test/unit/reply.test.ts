import { describe, expect, it } from "vitest";
import { REPLY_CAP, storedReply } from "../../src/outbox/reply.js";

const failed = { kind: "response", status: 400 } as const;

describe("storedReply", () => {
  it("keeps nothing of a success, or of an empty body", () => {
    expect(storedReply({ kind: "response", status: 200 }, "ok")).toBeNull();
    expect(storedReply(failed, "")).toBeNull();
    expect(storedReply(failed, null)).toBeNull();
  });

  it("keeps a failure's text, with what PostgreSQL cannot store replaced", () => {
    expect(storedReply(failed, "bad\u0000input")).toBe("bad\ufffdinput");
    expect(storedReply({ kind: "error", errorClass: "network", message: "reset" }, "partial\u0001")).toBe(
      "partial\ufffd",
    );
  });

  it("says a binary body was there instead of storing noise", () => {
    const gzip = "\u001f\ufffd\b\u0000\u0000\u0000\u0000\u0000\u0000\u0003\ufffdV*";
    expect(storedReply(failed, gzip)).toBe(`[binary reply of ${gzip.length} characters, not stored]`);
  });

  it("masks echoed secrets", () => {
    const echo = [
      "Authorization: Bearer abc.def.ghi",
      "webhook-signature: v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pW4= v1,second",
      "Cookie: session=xyz",
      '{"error":"bad","api_key":"AKIA123","client_secret":"s3cr3t","token":"tok"}',
      "url https://app:hunter2@host/x?sig=abcdef whsec_c2VjcmV0",
    ].join("\n");
    const stored = storedReply(failed, echo)!;
    for (const secret of [
      "abc.def",
      "K5oZ",
      "second",
      "xyz",
      "AKIA123",
      "s3cr3t",
      '"tok"',
      "hunter2",
      "abcdef",
      "c2VjcmV0",
    ]) {
      expect(stored).not.toContain(secret);
    }
    expect(stored).toContain('"error":"bad"');
  });

  it("cuts a long reply", () => {
    const stored = storedReply(failed, "x".repeat(10_000))!;
    expect(stored).toHaveLength(REPLY_CAP);
    expect(stored.endsWith("…")).toBe(true);
  });
});
