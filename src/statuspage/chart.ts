import type { MinuteBucket } from "./data.js";

/** Deliveries (green) and failures (red) per minute over the last hour, as inline SVG bars. */
export function chartSvg(buckets: readonly MinuteBucket[], now: Date): string {
  const width = 600;
  const height = 120;
  const slot = width / 60;
  const start = Math.floor(now.getTime() / 60_000) - 59;
  const byMinute = new Map(buckets.map((b) => [Math.floor(new Date(b.minute).getTime() / 60_000), b]));
  const max = Math.max(1, ...buckets.map((b) => b.delivered + b.failed));
  const bars: string[] = [];
  for (let i = 0; i < 60; i++) {
    const b = byMinute.get(start + i);
    if (!b) continue;
    const okH = (b.delivered / max) * (height - 14);
    const failH = (b.failed / max) * (height - 14);
    const x = (i * slot + 1).toFixed(1);
    const w = (slot - 2).toFixed(1);
    bars.push(
      `<rect class="ok" x="${x}" y="${(height - okH).toFixed(1)}" width="${w}" height="${okH.toFixed(1)}"><title>${b.delivered} delivered</title></rect>`,
      `<rect class="fail" x="${x}" y="${(height - okH - failH).toFixed(1)}" width="${w}" height="${failH.toFixed(1)}"><title>${b.failed} failed</title></rect>`,
    );
  }
  return `<svg viewBox="0 0 ${width} ${height}" role="img" aria-label="Deliveries and failures per minute, last hour" preserveAspectRatio="none">
<text x="2" y="11" class="axis">${max}/min</text>${bars.join("")}
<line x1="0" y1="${height - 0.5}" x2="${width}" y2="${height - 0.5}" class="base"/></svg>`;
}
