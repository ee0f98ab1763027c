/**
 * A full rendered for a subscription allocates every row again (read back from the part files,
 * mapped, rendered, stored, loaded, sent to the database): about 150 MB of short-lived objects
 * and buffers per million rows. V8 sometimes lets the promoted part pile up before its next major
 * collection: sampled with process.memoryUsage(), 2 runs of 8 reached 80-88 MB of heap (and
 * 50 MB of buffers) where the others peaked at 31 MB, and peak RSS went from ~140 MB to ~180 MB
 * (`npm run bench -- formats`). A full collection after every COLLECT_BYTES of bodies bounds
 * that pile-up: with 16 MB, 2 of 8 runs still reached 150-156 MB; with 4 MB, 8 of 8 stayed at
 * 116-139 MB (heap at most 34 MB) and no run was slower beyond the machine's noise (~20 collections
 * of ~10 ms per million rows).
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

const COLLECT_BYTES = 4 * 1024 * 1024;

let gc: (() => void) | null | undefined;

function collect(): void {
  if (gc === undefined) {
    try {
      // `gc` is exposed to contexts created after the flag is set (not to this one)
      setFlagsFromString("--expose-gc");
      gc = runInNewContext("gc") as () => void;
    } catch {
      gc = null; // a runtime that refuses: V8's own timing, as before
    }
  }
  gc?.();
}

/** Counts bytes handled; a full collection each time COLLECT_BYTES more have gone by. */
export function collector(): (bytes: number) => void {
  let since = 0;
  return (bytes) => {
    since += bytes;
    if (since < COLLECT_BYTES) return;
    since = 0;
    collect();
  };
}
