/**
 * Where an SFTP delivery's time goes, for the benchmark (bench/sftp.ts splits a run into the
 * sender's phases and the engine's time between attempts) and for tests that must know when a
 * file is staged or renamed. Nothing listens in production, and then a phase costs one property read.
 */
export const sftpTrace: {
  on?: (phase: string, startedAt: number, endedAt: number, detail?: string) => void;
  /** Called as a phase starts (tests: what was recorded before a rename went out). */
  start?: (phase: string, detail?: string) => void;
} = {};

/** `work`, reported as `phase` (from now until it settles) when something listens. */
export function traced<T>(phase: string, work: () => Promise<T>, detail?: string): Promise<T> {
  const on = sftpTrace.on;
  sftpTrace.start?.(phase, detail);
  if (!on) return work();
  const startedAt = performance.now();
  return work().finally(() => on(phase, startedAt, performance.now(), detail));
}
