import type { ResultColumn } from "../db/db.js";
import { ConnectorError } from "../errors.js";

/**
 * Quantities are whole numbers, end to end: OMS stock feeds take whole units (Fluent: "an absolute
 * whole number"), the sent state is bigint, and one text form ("10", never "10.000") keeps a full
 * and a delta of the same value byte for byte the same. A numeric source column is welcome as
 * long as its values are whole (numeric(12,3) holding 10.000 is 10); a fractional value fails the
 * run with the query's name, never rounded silently. Pure.
 */

const INT = new Set([21, 23, 20]); // int2, int4, int8
const NUMERIC = 1700;
const FLOAT = new Set([700, 701]); // float4, float8: checked row by row like numeric
const TYPE_NAMES: Record<number, string> = {
  16: "boolean",
  25: "text",
  1043: "varchar",
  1042: "char",
  1082: "date",
  1114: "timestamp",
  1184: "timestamptz",
  114: "json",
  3802: "jsonb",
};

/** Whether the column holds numbers whose values may still need the whole-number check. */
export const quantityKind = (typeId: number): "integer" | "decimal" | null =>
  INT.has(typeId) ? "integer" : typeId === NUMERIC || FLOAT.has(typeId) ? "decimal" : null;

/** What is wrong with a query's result columns for these CSV columns, in plain words (or []). */
export function columnProblems(
  query: string,
  result: readonly ResultColumn[],
  csv: readonly string[],
): string[] {
  const names = result.map((c) => c.name);
  const problems: string[] = [];
  for (const c of new Set(["sku", "location", "quantity", ...csv])) {
    const n = names.filter((x) => x === c).length;
    if (n === 0) {
      const where = csv.includes(c) ? `stock.format.columns lists "${c}"` : `"${c}" is required`;
      problems.push(`${where}, but ${query} has no column "${c}" (its columns: ${names.join(", ")})`);
    } else if (n > 1) problems.push(`${query} returns the column "${c}" ${n} times`);
  }
  const quantity = result.find((c) => c.name === "quantity");
  if (quantity && !quantityKind(quantity.typeId)) {
    const type = TYPE_NAMES[quantity.typeId] ?? `type oid ${quantity.typeId}`;
    problems.push(
      `${query} returns quantity as ${type}: quantities are whole numbers (integer, bigint, or numeric with whole values); cast it in the query`,
    );
  }
  return problems;
}

/** Throws the problems of `columnProblems` as one config error (exit 2: the config must change). */
export function checkColumns(query: string, result: readonly ResultColumn[], csv: readonly string[]): void {
  const problems = columnProblems(query, result, csv);
  if (problems.length) throw new ConnectorError("CONFIG_INVALID", problems.join("; "));
}

/** A source value as a whole number ("10.000" -> 10), or a clear error naming the query and key. */
export function wholeQuantity(
  value: unknown,
  query: string,
  row: { sku: unknown; location: unknown },
): number {
  const n =
    typeof value === "number"
      ? value
      : typeof value === "bigint"
        ? Number(value)
        : typeof value === "string" && /^\s*[-+]?\d+(\.0*)?\s*$/.test(value)
          ? Number(value)
          : Number.NaN;
  if (Number.isSafeInteger(n)) return n === 0 ? 0 : n; // no -0
  throw fractional(query, String(value), `${row.sku} at ${row.location}`);
}

// INVALID_INPUT, not CONFIG_INVALID: the data is at fault (exit 1), the config may be fine.
export const fractional = (query: string, value: string, key?: string) =>
  new ConnectorError(
    "INVALID_INPUT",
    `${query} returned quantity ${value}${key ? ` for ${key}` : ""}: quantities are whole numbers; ` +
      "round in the query (floor(...) sends only whole units)",
  );

/**
 * The COPY column for a numeric quantity: its whole value as int8 (text "10"); a fractional
 * value makes the cast fail with FRACTION_MARK in the message, for `copyFractionError`.
 */
export const wholeQuantitySql = (column: string) =>
  `case when ${column} = trunc(${column}) then trunc(${column})::int8 else (${column}::text || '${FRACTION_MARK}')::int8 end`;

const FRACTION_MARK = " (not a whole number)";

/** The COPY's cast error for a fractional quantity, as the error `wholeQuantity` gives. */
export function copyFractionError(err: unknown, query: string): Error | null {
  const message = String((err as Error | null)?.message ?? "");
  const m = /"(.*) \(not a whole number\)"/.exec(message);
  return m ? fractional(query, m[1]!) : null;
}
