/** Aligned columns for people; colour only on a TTY. */
export function table(head: string[], rows: (string | number)[][], out: NodeJS.WritableStream): string {
  const cells = [head, ...rows.map((r) => r.map(String))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  const tty = (out as { isTTY?: boolean }).isTTY === true;
  const lines = cells.map((r, n) => {
    const line = r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
    return n === 0 && tty ? `\x1b[1m${line}\x1b[0m` : line;
  });
  return `${lines.join("\n")}\n${rows.length === 0 ? "(none)\n" : ""}`;
}

export function when(d: Date | null | undefined): string {
  return d ? d.toISOString().replace("T", " ").slice(0, 19) : "-";
}
