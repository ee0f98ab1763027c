// Issue 17.11: what `config check` prints is a valid config that loads to the same values.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { durationsAsText, loadConfig, redactConfig } from "../../src/config/index.ts";

const SHIPPED = readFileSync(new URL("../../config/stock-sync.yaml", import.meta.url), "utf8");

const printed = (yaml: string) => stringify(durationsAsText(redactConfig(loadConfig(yaml, {}).config)));

/**
 * Destinations are printed as their origin only (issue 18.8: a URL path can hold a token), so
 * they are the one thing that does not round-trip; everything else must.
 */
const withoutUrls = (config: unknown) =>
  JSON.parse(
    JSON.stringify(config, (k, v) =>
      k === "url" && typeof v === "string" && v.includes("://") ? "<url>" : v,
    ),
  );

describe("durationsAsText", () => {
  it("the shipped config round-trips with every duration unchanged", () => {
    const original = loadConfig(SHIPPED, {}).config;
    const text = printed(SHIPPED);
    expect(withoutUrls(loadConfig(text, {}).config)).toEqual(withoutUrls(original));
    expect(text).toContain("tolerance: 5m");
    expect(text).toContain("retention: 30d");
    expect(text).toMatch(/retry_intervals:\n\s+- 30s\n\s+- 1m\n/);
  });

  it("odd durations round-trip too: fractions, compounds, zero, no rate limit", () => {
    const yaml = `subscriptions:
  - name: a
    subjects: [order.created]
    url: https://example.com/x
    timeout: 1m30s
    retry_intervals: [0.05, 1.5, 3600]
    rate_limit: { requests: 2, per: 250ms }
  - name: b
    subjects: [order.created]
    url: https://example.com/y
delivery: { shutdown_grace: 0, poll_interval: 0.001, lease: 2m }
`;
    const original = loadConfig(yaml, {}).config;
    expect(withoutUrls(loadConfig(printed(yaml), {}).config)).toEqual(withoutUrls(original));
    expect(printed(yaml)).toContain("timeout: 1m30s");
  });
});
