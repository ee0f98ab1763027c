// Issue 17.11: `config check > x.yaml` then `--config x.yaml` is the same config.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCli } from "../helpers/cli.js";

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "stock-sync-check-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const body = (stdout: string) => stdout.split("\n").slice(1).join("\n"); // after the "# … valid" line

describe("config check", () => {
  it("prints durations as the file writes them, so its output is a config that round-trips", async () => {
    const first = await runCli(["config", "check"]);
    expect(first.code).toBe(0);
    expect(body(first.stdout)).toContain("tolerance: 5m");
    expect(body(first.stdout)).toContain("poll_interval: 1s");
    const copy = join(dir, "printed.yaml");
    await writeFile(copy, first.stdout);
    const second = await runCli(["--config", copy, "config", "check"]);
    expect(second.code).toBe(0);
    expect(body(second.stdout)).toBe(body(first.stdout));
  });
});
