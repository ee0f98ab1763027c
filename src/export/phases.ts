/**
 * Where a run's time goes, phase by phase (ms, rounded), reported with its result and logged:
 * the next bottleneck of a full is visible without a profiler (bench/full.ts prints them).
 * Wall time by `performance.now()`: it measures, it decides nothing.
 */
export type Phases = Record<string, number>;

export function phaseTimer() {
  const phases: Phases = {};
  let last = performance.now();
  return {
    phases,
    /** Adds the time since the previous mark (or the start) to `name`. */
    mark(name: string): void {
      const now = performance.now();
      phases[name] = Math.round((phases[name] ?? 0) + now - last);
      last = now;
    },
  };
}
