/**
 * Durations and sizes as people write them in the config ("30s", "1m30s", "1mb"), turned into the
 * plain numbers the code works with (milliseconds, bytes).
 */
import { ConnectorError } from "../errors.ts";

const MS_PER_UNIT: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};
// Binary multiples: "1mb" is what a body-size limit usually means to the people who set one.
const BYTES_PER_UNIT: Readonly<Record<string, number>> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

const DURATION_PART = /\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*/y;
const SIZE = /^\s*(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)\s*$/i;
// Interpolated values are always strings, so "${TIMEOUT:-30}" must still read as 30 seconds.
const PLAIN_NUMBER = /^\s*\d+(?:\.\d+)?\s*$/;

/**
 * Milliseconds for a duration, or undefined when `v` is not one. Numbers (and numeric strings) are
 * seconds and may be fractional; strings combine units: "500ms", "30s", "5m", "1h", "1d", "1m30s".
 * Results are rounded to whole milliseconds.
 */
export function durationMs(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isFinite(v) && v >= 0 ? Math.round(v * 1000) : undefined;
  if (typeof v !== "string") return undefined;
  if (PLAIN_NUMBER.test(v)) return Math.round(Number(v) * 1000);
  let total = 0;
  let parts = 0;
  DURATION_PART.lastIndex = 0;
  while (DURATION_PART.lastIndex < v.length) {
    const m = DURATION_PART.exec(v);
    if (!m) return undefined;
    total += Number(m[1]) * (MS_PER_UNIT[m[2]!] ?? Number.NaN);
    parts++;
  }
  return parts > 0 && Number.isFinite(total) ? Math.round(total) : undefined;
}

/** Bytes for a size ("10b", "512kb", "1mb", "2gb"; a number is bytes), or undefined when `v` is not one. */
export function sizeBytes(v: unknown): number | undefined {
  if (typeof v === "number") return Number.isFinite(v) && v >= 0 ? Math.round(v) : undefined;
  if (typeof v !== "string") return undefined;
  if (PLAIN_NUMBER.test(v)) return Math.round(Number(v));
  const m = SIZE.exec(v);
  return m ? Math.round(Number(m[1]) * BYTES_PER_UNIT[m[2]!.toLowerCase()]!) : undefined;
}

/**
 * @example parseDuration("1m30s") === 90_000; parseDuration(0.001) === 1
 * @throws ConnectorError CONFIG_INVALID when `v` is not a duration
 */
export function parseDuration(v: string | number): number {
  const ms = durationMs(v);
  if (ms === undefined)
    throw new ConnectorError("CONFIG_INVALID", `expected a duration like "1s", got ${show(v)}`);
  return ms;
}

/**
 * @example parseSize("1mb") === 1_048_576
 * @throws ConnectorError CONFIG_INVALID when `v` is not a size
 */
export function parseSize(v: string | number): number {
  const bytes = sizeBytes(v);
  if (bytes === undefined)
    throw new ConnectorError("CONFIG_INVALID", `expected a size like "1mb", got ${show(v)}`);
  return bytes;
}

/** `ms` in the units a config would use, for messages: 90_000 -> "1m30s", 120_000 -> "2m". */
export function formatDuration(ms: number): string {
  let rest = Math.round(ms);
  let text = "";
  for (const unit of ["d", "h", "m", "s", "ms"]) {
    const size = MS_PER_UNIT[unit]!;
    const count = Math.floor(rest / size);
    if (count > 0) text += `${count}${unit}`;
    rest -= count * size;
  }
  return text === "" ? "0s" : text;
}

const show = (v: unknown) => (typeof v === "string" ? JSON.stringify(v) : String(v));
