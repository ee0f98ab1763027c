import type { Sample } from "./stats.js";

/**
 * One line of the results table: a figure measured next to its baseline in the same runs, the
 * ratio the goal is stated in (median of the per-run ratios, so drift between runs cancels),
 * and whether the goal is met. `met: null` = reported for information, no goal.
 */
export type Row = {
  figure: string;
  unit: string;
  value: Sample;
  baseline: { label: string; unit: string; value: Sample } | null;
  ratio: Sample | null;
  goal: string;
  met: boolean | null;
  note?: string;
};

export type BenchOptions = { quick: boolean };

const fmt = (n: number) => {
  if (!Number.isFinite(n)) return String(n);
  const abs = Math.abs(n);
  if (abs >= 10_000) return Math.round(n).toLocaleString("en-US");
  if (abs >= 100) return n.toFixed(0);
  if (abs >= 10) return n.toFixed(1);
  return n.toFixed(2);
};

export const formatSample = (s: Sample, unit = "") =>
  `${fmt(s.median)}${unit ? ` ${unit}` : ""} (${fmt(s.min)}–${fmt(s.max)})`;

const verdict = (met: boolean | null) => (met === null ? "info" : met ? "met" : "MISSED");

/** Table cells of a row, in the order of `HEADER`. */
export function cells(row: Row): string[] {
  return [
    row.figure,
    formatSample(row.value, row.unit),
    row.baseline ? `${row.baseline.label}: ${formatSample(row.baseline.value, row.baseline.unit)}` : "—",
    row.ratio ? `${fmt(row.ratio.median)}× (${fmt(row.ratio.min)}–${fmt(row.ratio.max)})` : "—",
    row.goal,
    verdict(row.met),
  ];
}

export const HEADER = ["figure", "value: median (min–max)", "baseline", "ratio", "goal", "result"];

/** A plain-text table with aligned columns (also valid Markdown). */
export function formatTable(rows: readonly Row[]): string {
  const lines = [HEADER, HEADER.map(() => "---"), ...rows.map(cells)];
  const widths = HEADER.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  return lines
    .map((l, li) =>
      li === 1
        ? `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`
        : `| ${l.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`,
    )
    .join("\n");
}

/** The rows' notes (what a median cannot say: capped runs, where the time went), one per line. */
export const formatNotes = (rows: readonly Row[]) =>
  rows
    .filter((r) => r.note)
    .map((r) => `- ${r.figure}: ${r.note}`)
    .join("\n");
