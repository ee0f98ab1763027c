/** Issue 18 §8 (redaction) and §10 (weak settings refused). */
import { describe, expect, it } from "vitest";
import { loadConfig, redactConfig, redactString } from "../../src/config/index.js";
import { originOnly } from "../../src/config/redact.js";
import { configError } from "../helpers/engine.js";

describe("redaction (§8)", () => {
  it.each([
    [
      "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/abcdEFGHijklMNOPqrstUVWX",
      "abcdEFGHijklMNOPqrstUVWX",
    ],
    [
      "https://discord.com/api/webhooks/123456789012345678/AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_AbCdEfGhIjKlMnOpQrStUv",
      "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    ],
    [
      "https://contoso.webhook.office.com/webhookb2/9f1c2d3e-aaaa-bbbb-cccc-123456789abc@72f988bf-86f1-41af-91ab-2d7cd011db47/IncomingWebhook/0123456789abcdef0123456789abcdef/9f1c2d3e-aaaa-bbbb-cccc-123456789abc",
      "0123456789abcdef0123456789abcdef",
    ],
    ["posting to https://s3cr3tT0ken@oms.example.com/stock failed", "s3cr3tT0ken"],
    ["GET https://api.example.com/v1?key=k-123&page=2", "k-123"],
    ["GET https://api.example.com/v1?code=c-456", "c-456"],
    ["GET https://api.example.com/v1?auth=a-789", "a-789"],
    ["Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"],
    ["x-api-auth: zz-top-secret-1", "zz-top-secret-1"],
    ['connect failed: password "hunter 2 with spaces"', "hunter 2 with spaces"],
    ['{"password":"p@ss w0rd"}', "p@ss w0rd"],
    ["PGPASSWORD='quoted-pass'", "quoted-pass"],
  ])("masks the secret in %s", (text, secret) => {
    const out = redactString(text);
    expect(out).not.toContain(secret);
    expect(out).toContain("[redacted]");
  });

  it("keeps ordinary text and URLs readable", () => {
    for (const text of [
      "https://example.com:8443/path",
      "https://oms.example.com/api/v1/stock/12345",
      "GET /x?page=2",
      "authorization: Bearer [redacted]",
    ]) {
      expect(redactString(text)).toBe(text);
    }
  });

  it("config check prints every subscription and notification URL as its origin only", () => {
    const { config } = loadConfig(
      `subscriptions:
  - name: chat
    subjects: [ops.*]
    url: "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/shortTok"
  - name: drop
    subjects: [stock.full]
    url: "file://./out/stock"
notifications:
  on_failure: ["https://oms.example.com/alerts/abc?x=1"]
  on_deactivation: ["https://outlook.office.com/webhook/short"]
`,
      {},
    );
    const text = JSON.stringify(redactConfig(config));
    expect(text).not.toContain("shortTok");
    expect(text).not.toContain("alerts/abc");
    expect(text).not.toContain("webhook/short");
    expect(text).toContain('"url":"https://hooks.slack.com/…"');
    expect(text).toContain('"url":"file://./out/stock"');
    expect(originOnly("https://oms.example.com")).toBe("https://oms.example.com");
  });
});

describe("weak settings are refused (§10)", () => {
  it("a short admin token", () => {
    expect(configError('server: { admin_token: "a" }')).toMatch(
      /server\.admin_token: expected at least 16 characters/,
    );
    expect(configError('server: { admin_token: "0123456789abcdef" }')).toBe("no error");
    expect(configError('server: { admin_token: "" }')).toBe("no error");
  });

  it("a short whsec_ key for inbound events", () => {
    expect(configError('server: { inbound: { secrets: ["whsec_YWJj"] } }')).toMatch(
      /server\.inbound\.secrets\[0\]: expected a key of at least 16 bytes/,
    );
    expect(
      configError(`server: { inbound: { secrets: ["whsec_${Buffer.alloc(24, 7).toString("base64")}"] } }`),
    ).toBe("no error");
  });

  it("a tolerance above an hour", () => {
    expect(configError("server: { inbound: { tolerance: 30d } }")).toMatch(
      /server\.inbound\.tolerance: expected at most 1h/,
    );
  });

  it("a retention shorter than a day (or the tolerance): inbox ids would be forgotten while replayable", () => {
    expect(configError("delivery: { retention: 1h }")).toMatch(/delivery\.retention: must be at least 1d/);
    expect(configError("delivery: { retention: 1d }")).toBe("no error");
  });
});
