import { buildDist } from "../../scripts/build.js";
import { distFreshness } from "../../src/bundle.js";
import { BIN, ROOT } from "../../test/helpers/cli.js";
import { type ChildRun, runMeasured } from "../../test/helpers/memory.js";
import { progress } from "./stats.js";

export { BIN, ROOT };

export type { ChildRun };

/** `stock-sync <args>` as its own process, as an operator would run it, with its peak memory. */
export async function runStockSync(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ChildRun> {
  await ensureBuilt();
  return runMeasured(args, env);
}

/**
 * An operator runs the bundle `npm ci` built; after an edit to src/ bin.js would run src/ through
 * tsx instead (~30 MB more), so the figures would not be the product's.
 */
export async function ensureBuilt(): Promise<void> {
  const dist = distFreshness();
  if (dist.fresh) return;
  progress(`building dist/ (${dist.reason})`);
  await buildDist();
}
