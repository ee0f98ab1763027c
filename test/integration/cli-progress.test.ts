// Issue 17.16: on a terminal, a pretty log line never lands on the progress bar's line.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { main } from "../../src/cli.js";
import { createTestDb, type TestDb } from "../helpers/db.js";

/** What a terminal would receive, as one string. */
function fakeTerminal() {
  let text = "";
  const stream = new Writable({
    write(chunk, _enc, done) {
      text += String(chunk);
      done();
    },
  });
  return Object.assign(stream, { isTTY: true, columns: 120, text: () => text });
}

const QUERY = "select 'SKU-' || g as sku, 'LOC-1' as location, g as quantity from generate_series(1, 3000) g";

describe.skipIf(!inject("pgTemplate"))("progress bar and log lines on a terminal", () => {
  let t: TestDb & { drop(keep?: boolean): Promise<void> };
  let dir: string;
  beforeAll(async () => {
    t = await createTestDb("postgres");
    dir = await mkdtemp(join(tmpdir(), "stock-sync-progress-"));
  });
  afterAll(async () => {
    await t?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it("every log line starts on a clean line", async () => {
    const config = join(dir, "c.yaml");
    await writeFile(
      config,
      `database:\n  url: "${t.url}"\nsource:\n  url: "${t.url}"\n` +
        `stock:\n  capture: { mode: full_diff }\n  queries:\n    sellable: "${QUERY} where $1::int >= 0"\n` +
        `    sellable_keys: "${QUERY} where $1::int >= 0 and ('SKU-' || g) = any($2::text[]) and 'LOC-1' = any($3::text[])"\n` +
        `    time_candidates: none\nlog: { format: pretty }\n`,
    );
    const stderr = fakeTerminal();
    const stdout = fakeTerminal();
    const code = await main(["node", "stock-sync", "--config", config, "snapshot", "--dry-run"], {
      env: {},
      stdout,
      stderr,
    });
    expect(code, stderr.text()).toBe(0);
    const text = stderr.text();
    expect(text).toContain("rows read"); // the bar was drawn
    // pretty lines start with their time, "[HH:MM:SS.mmm]" (coloured); what comes before each
    // must end a line or clear it, never be the bar's text
    const starts = [...text.matchAll(/(?:\x1b\[\d+m)?\[\d\d:\d\d:\d\d\.\d{3}\]/g)];
    expect(starts.length).toBeGreaterThan(0);
    for (const m of starts) {
      const before = text.slice(0, m.index);
      expect(
        before === "" || before.endsWith("\n") || before.endsWith("\r\x1b[2K\x1b[?7h"),
        JSON.stringify(before.slice(-80)),
      ).toBe(true);
    }
  }, 60_000);
});
