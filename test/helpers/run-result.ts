import type { RunResult } from "../../src/export/run.js";

/** A full's result as the exporter reports it, for tests of what the scheduler does with one. */
export const fullResult = (status: RunResult["status"], detail?: string): RunResult => ({
  kind: "full",
  status,
  runId: 1,
  snapshotId: "full-x",
  rows: 0,
  parts: 0,
  durationMs: 1,
  detail,
});
