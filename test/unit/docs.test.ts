import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/index.js";

/** Every leaf key path of a parsed config; arrays of objects as `name[]`, records and lists as leaves. */
function keyPaths(value: unknown, path: string, out: Set<string>): Set<string> {
  if (Array.isArray(value)) {
    // every item: optional blocks (an sftp subscription's) may be set on one item only
    if (value.length && typeof value[0] === "object" && value[0] !== null)
      for (const item of value) keyPaths(item, `${path}[]`, out);
    else out.add(path);
  } else if (value && typeof value === "object" && Object.keys(value).length) {
    for (const [k, v] of Object.entries(value)) keyPaths(v, path ? `${path}.${k}` : k, out);
  } else {
    out.add(path);
  }
  return out;
}

const PIN = `SHA256:${"A".repeat(43)}`;

describe("docs/configuration.md", () => {
  // A config with one subscription whose optional blocks are set, so their keys exist.
  const { config } = loadConfig(
    'subscriptions:\n  - name: a\n    subjects: [stock.full]\n    url: "http://h/"\n    rate_limit: { requests: 1, per: 1s }\n' +
      "    body: { format: json, template: 'rows', rows_per_message: 1, max_bytes: 1mb }\n" +
      "    map: { location: { file: l.csv }, sku: { file: s.csv } }\n" +
      `  - { name: b, subjects: [x], url: "sftp://u@h/d", rate_limit: { requests: 1, per: 1s }, sftp: { host_key: "${PIN}", private_key: k, passphrase: p, marker: .done } }\n` +
      '  - { name: c, subjects: [x], url: "sftp://u@h/d", rate_limit: { requests: 1, per: 1s }, sftp: { known_hosts: f, private_key_file: f, password: p } }\n' +
      '  - { name: d, subjects: [stock.full], url: "http://h/", rate_limit: { requests: 1, per: 1s }, job: { open: { url: "http://h/open", method: POST, headers: {}, body: "{}" }, send: { url: "http://h/send", method: POST, headers: {}, body: "{}" }, close: { url: "http://h/close", method: POST, headers: {}, body: "{}" }, poll: { url: "http://h/p", method: GET, headers: {}, body: "{}", done_when: "true", failed_when: "false", errors: "[]", interval: 1s, give_up_after: 1h } } }\n',
    {},
  );
  const schemaKeys = keyPaths(config, "", new Set());
  const documented = new Set(
    [
      ...readFileSync(new URL("../../docs/configuration.md", import.meta.url), "utf8").matchAll(
        /^\| `([^`]+)` \|/gm,
      ),
    ].map((m) => m[1]!),
  );

  it("documents every config key", () => {
    expect([...schemaKeys].filter((k) => !documented.has(k))).toEqual([]);
  });

  it("documents no key the schema does not know", () => {
    expect([...documented].filter((k) => !schemaKeys.has(k))).toEqual([]);
  });
});
