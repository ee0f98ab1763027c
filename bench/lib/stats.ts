/** Median and spread of repeated measurements. */
export type Sample = { median: number; min: number; max: number; values: number[] };

export function summarize(values: readonly number[]): Sample {
  if (values.length === 0) throw new Error("no measurements");
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { median, min: sorted[0]!, max: sorted.at(-1)!, values: [...values] };
}

/** The q-quantile (0..1) of a list, nearest rank: p99 of 1,000 latencies is the 990th. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

/**
 * Runs `fn` `warmups` times and discards the results (JIT, caches, connection pools), then
 * `runs` times and keeps them. Each call measures a figure and its baseline together, so a
 * noisy moment on the machine hits both.
 */
export async function repeat<T>(
  label: string,
  counts: { warmups: number; runs: number },
  fn: (run: number) => Promise<T>,
): Promise<T[]> {
  for (let i = 0; i < counts.warmups; i++) {
    progress(`${label}: warm-up ${i + 1}/${counts.warmups}`);
    await fn(-1);
  }
  const out: T[] = [];
  for (let i = 0; i < counts.runs; i++) {
    progress(`${label}: run ${i + 1}/${counts.runs}`);
    out.push(await fn(i));
  }
  return out;
}

/** Progress goes to stderr so stdout holds only the tables. */
export function progress(message: string): void {
  process.stderr.write(`  · ${message}\n`);
}

export const seconds = (ms: number) => ms / 1000;
