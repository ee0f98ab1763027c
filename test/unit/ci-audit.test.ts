/** Issue 18 §11: CI audits the runtime dependencies without depending on the audit endpoint. */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = new URL("../../", import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), "stock-sync-audit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs scripts/audit.js with a stand-in npm that prints `json` and exits with `code`. */
function audit(json: string, code: number) {
  const fake = join(dir, `npm-${Math.random().toString(36).slice(2)}`);
  writeFileSync(fake, `#!/bin/sh\ncat <<'JSON'\n${json}\nJSON\nexit ${code}\n`);
  chmodSync(fake, 0o755);
  return spawnSync(process.execPath, [join(ROOT, "scripts/audit.js")], {
    encoding: "utf8",
    env: { ...process.env, AUDIT_NPM: fake },
  });
}

describe("CI audit step", () => {
  it("runs in .ci/run before exactly the README's test command", () => {
    const lines = readFileSync(join(ROOT, ".ci/run"), "utf8").trim().split("\n");
    expect(lines.at(-1)).toBe("npm test");
    expect(readFileSync(join(ROOT, "README.md"), "utf8")).toContain("npm ci && npm test");
    expect(lines).toContain("node scripts/audit.js");
  });

  it("does not fail when the audit endpoint does not answer", () => {
    const r = audit(
      '{"message":"405 Method Not Allowed - POST https://registry/-/npm/v1/security/advisories/bulk"}',
      1,
    );
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("no answer from the audit endpoint");
    expect(audit("", 1).status).toBe(0);
  });

  it("fails on high or critical advisories, passes on lesser ones", () => {
    const report = (high: number) =>
      JSON.stringify({ metadata: { vulnerabilities: { info: 0, low: 2, moderate: 1, high, critical: 0 } } });
    expect(audit(report(1), 1).status).toBe(1);
    expect(audit(report(0), 0).status).toBe(0);
  });
});
