import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { parse } from "csv-parse/sync";
import type { MapConfig } from "./config.ts";
import type { Row } from "./fields.ts";

/** A loaded code map: ours -> theirs, and what to do with a code it lacks. */
export type CodeMap = { file: string; missing: "skip" | "keep" | "fail"; codes: ReadonlyMap<string, string> };
export type CodeMaps = { sku?: CodeMap; location?: CodeMap };

/** How many rows a run's mapping dropped, and the first codes `fail` found unmapped. */
export type MapTally = { skipped: number; unmapped: { field: "sku" | "location"; code: string }[] };

const MAX_LISTED = 10;

/**
 * Two columns, ours then theirs, one code per line; an optional header row `ours,theirs`
 * (any case) and blank lines are ignored. A code mapped twice is an error: which one wins
 * would be an accident of the file's order.
 */
export function parseCodeMap(text: string, file: string): Map<string, string> {
  const records = parse(text, { skip_empty_lines: true, relax_column_count: true, trim: true }) as string[][];
  const codes = new Map<string, string>();
  records.forEach((rec, i) => {
    if (i === 0 && rec[0]?.toLowerCase() === "ours" && rec[1]?.toLowerCase() === "theirs") return;
    const line = i + 1;
    if (rec.length !== 2 || !rec[0] || !rec[1])
      throw new Error(
        `${file} record ${line}: expected two non-empty columns (ours, theirs), got ${rec.length}`,
      );
    const before = codes.get(rec[0]);
    if (before !== undefined && before !== rec[1])
      throw new Error(`${file} record ${line}: "${rec[0]}" is mapped twice ("${before}" and "${rec[1]}")`);
    codes.set(rec[0], rec[1]);
  });
  return codes;
}

/** Reads a subscription's map files; relative paths are from the working directory, like file:// URLs. */
export async function loadCodeMaps(cfg: MapConfig | undefined, cwd = process.cwd()): Promise<CodeMaps> {
  const maps: CodeMaps = {};
  for (const field of ["sku", "location"] as const) {
    const rule = cfg?.[field];
    if (!rule) continue;
    const path = resolve(cwd, rule.file);
    let text: string;
    try {
      text = await readFile(path, "utf8");
    } catch (err) {
      throw new MapFileError(
        `map.${field}.file`,
        `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`,
      );
    }
    try {
      maps[field] = { file: rule.file, missing: rule.missing, codes: parseCodeMap(text, rule.file) };
    } catch (err) {
      throw new MapFileError(`map.${field}.file`, (err as Error).message);
    }
  }
  return maps;
}

/** A map file that cannot be used; `path` is relative to the subscription (`map.location.file`). */
export class MapFileError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

/** The row in the OMS's codes, or null when a `skip` rule drops it (counted in `tally`). */
export function mapRow(row: Row, maps: CodeMaps, tally: MapTally): Row | null {
  let out = row;
  for (const field of ["sku", "location"] as const) {
    const map = maps[field];
    if (!map) continue;
    const theirs = map.codes.get(row[field]);
    if (theirs !== undefined) {
      out = out === row ? { ...row } : out;
      out[field] = theirs;
    } else if (map.missing === "skip") {
      tally.skipped++;
      return null;
    } else if (map.missing === "fail") {
      const seen = tally.unmapped.some((u) => u.field === field && u.code === row[field]);
      if (!seen && tally.unmapped.length < MAX_LISTED) tally.unmapped.push({ field, code: row[field] });
      return null;
    }
  }
  return out;
}

/** `fail`'s message: the first unmapped codes, by field. */
export function unmappedText(tally: MapTally): string {
  return tally.unmapped.map((u) => `${u.field} "${u.code}"`).join(", ");
}
