/**
 * The tests' `startCli` (test/helpers/cli.ts) leaves no `stock-sync start` behind when the start
 * does not come within its bound (a loaded machine slows PGlite's boot): such a process, orphaned
 * once its test worker exits, went on using half a core for 40 minutes in one full run, and every
 * test and benchmark on the machine after it ran slower.
 */
import { mkdtemp, readdir, readlink, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { startCli } from "../helpers/cli.js";
import { waitUntil } from "../helpers/engine.js";

/** Processes whose working directory is `dir`. */
async function processesIn(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cwd = await readlink(`/proc/${entry}/cwd`).catch(() => null);
    if (cwd === dir) pids.push(Number(entry));
  }
  return pids;
}

it("a start that does not come within its bound is killed, not left running", async () => {
  const cwd = await mkdtemp(join(tmpdir(), "stock-sync-cli-timeout-"));
  try {
    const config = join(cwd, "config.yaml");
    await writeFile(config, "server:\n  port: 0\n");
    await expect(startCli(["--config", config], { cwd, timeoutMs: 1 })).rejects.toThrow(/no start within/);
    await waitUntil(async () => (await processesIn(cwd)).length === 0, 15_000, "the timed-out start gone");
  } finally {
    await rm(cwd, { recursive: true, force: true });
  }
});
