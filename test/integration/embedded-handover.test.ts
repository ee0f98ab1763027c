/**
 * Issue 17 §4: `start` must come up and stay up while a short-lived command owns the embedded
 * database, and take it over when that command exits. The test process plays the short-lived
 * owner (as `stock-sync status` would), so the handover happens at a moment the test chooses.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { openEmbedded } from "../../src/db/embedded.js";
import { runCli, startCli } from "../helpers/cli.js";
import { migratedDataDir } from "../helpers/data-dir.js";

const cleanup: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn().catch(() => undefined);
});

async function waitFor(check: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}`);
}

it("start joins a short-lived owner, takes the database over when it exits, and CLI commands keep working", async () => {
  const dir = await mkdtemp(join(tmpdir(), "stock-sync-handover-"));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  const config = join(dir, "stock-sync.yaml");
  await writeFile(
    config,
    `database:\n  data_dir: ${join(dir, "data")}\nserver:\n  port: 0\nstock:\n  simulator:\n    enabled: false\n`,
  );
  await migratedDataDir(join(dir, "data")); // the handover is the claim, not creating the database
  const shortLived = await openEmbedded(join(dir, "data"));
  cleanup.push(() => shortLived.close());
  expect(shortLived.role).toBe("owner");

  const start = await startCli(["--config", config], { timeoutMs: 120_000 });
  cleanup.push(() => start.stop());
  await shortLived.close(); // the command is done

  const ready = async () => (await fetch(`${start.url}/readyz`)).status === 200;
  await waitFor(ready, 90_000, "start to be ready on the database it took over");
  expect(start.child.exitCode).toBeNull();
  const status = await runCli(["--config", config, "status"]);
  expect(status.stderr).not.toMatch(/unavailable/);
  expect(status.code).toBe(0);
  expect(await ready()).toBe(true);
}, 300_000);
