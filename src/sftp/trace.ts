/**
 * Where an SFTP delivery's time goes, for the benchmark (bench/sftp.ts splits a run into the
 * sender's phases and the engine's time between attempts). Nothing listens in production, and
 * then a phase costs one property read.
 */
export const sftpTrace: { on?: (phase: string, startedAt: number, endedAt: number) => void } = {};

/** `work`, reported as `phase` (from now until it settles) when something listens. */
export function traced<T>(phase: string, work: () => Promise<T>): Promise<T> {
  const on = sftpTrace.on;
  if (!on) return work();
  const startedAt = performance.now();
  return work().finally(() => on(phase, startedAt, performance.now()));
}
