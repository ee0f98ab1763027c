import { Writable } from "node:stream";
import { createLogger } from "../../src/log.js";

/** A logger whose JSON lines the test reads (`warnings()`: those at level warn). */
export function capturedLog(level: "debug" | "info" = "info") {
  const lines: { level: number; msg: string; [k: string]: unknown }[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  const log = createLogger({ level, format: "json", destination });
  return { log, lines, warnings: () => lines.filter((l) => l.level === 40) };
}
