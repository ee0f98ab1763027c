import { prng } from "./fuzz.js";

/**
 * A seeded PRNG (mulberry32) for tests that pick data at random: the seed is TEST_SEED when set,
 * else a fixed one per test, and it is printed so that a failure can be run again with it.
 */
export function seededRandom(what: string): () => number {
  const seed = process.env.TEST_SEED ? Number(process.env.TEST_SEED) : hash(what);
  console.info(`[seed] ${what}: ${seed} (rerun with TEST_SEED=${seed})`);
  return prng(seed).next;
}

function hash(s: string): number {
  let h = 2166136261;
  for (const c of s) h = Math.imul(h ^ c.charCodeAt(0), 16777619) >>> 0;
  return h;
}
