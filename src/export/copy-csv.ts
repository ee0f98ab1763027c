import { quoteIdent, type ResultColumn } from "../db/db.js";

/**
 * Reading a full with `COPY (sellable) TO STDOUT WITH (FORMAT csv)` instead of a cursor, with
 * parts byte for byte what @fast-csv/format writes from the cursor's rows (SPEC §6: one CSV
 * format whatever the path). Pure: the statement, whether it applies, and cutting its output.
 */

// Types whose COPY text is what fast-csv prints of the value `pg` parses: the same string
// (text, varchar, bpchar, name, numeric) or the same digits (int2, int4, int8 as number or
// bigint). Others differ (bool t/true, float digits, dates) and keep the cursor path.
const SAME_TEXT = new Set([25, 1043, 1042, 19, 1700, 21, 23, 20]);

/** Whether COPY can write these columns: each is a result column once, of a type in SAME_TEXT. */
export function copyable(result: readonly ResultColumn[], columns: readonly string[]): boolean {
  return columns.every((c) => {
    const found = result.filter((r) => r.name === c);
    return found.length === 1 && SAME_TEXT.has(found[0]!.typeId);
  });
}

/**
 * The COPY of the sellable query's configured columns. COPY takes no bind parameters, so $1
 * (include_future_days, an integer from the validated config) is written into the text.
 * `quantity`, when given, is the SQL written for the quantity column (a numeric's whole value).
 */
export function copyStatement(
  sellable: string,
  columns: readonly string[],
  days: number,
  quantity?: (column: string) => string,
): string {
  if (!Number.isSafeInteger(days)) throw new Error(`include_future_days must be an integer, got ${days}`);
  const query = sellable.replace(/\$1(?!\d)/g, `(${days})`);
  const list = columns.map((c) => (c === "quantity" && quantity ? quantity(quoteIdent(c)) : quoteIdent(c)));
  return `copy (select ${list.join(", ")} from (${query}\n) as s) to stdout with (format csv)`;
}

/**
 * @fast-csv/format 5's quoting: a field with a quote is quoted with quotes doubled; one with a
 * comma, CR, LF or "|" (its pattern `[,\n|\r|\n]` is a character class, so "|" counts) is quoted.
 */
export function csvField(value: string): string {
  if (value.includes('"')) return `"${value.replaceAll('"', '""')}"`;
  return /[,\n\r|]/.test(value) ? `"${value}"` : value;
}

/** The header line every part starts with, as fast-csv writes it. */
export const csvHeader = (columns: readonly string[]) => `${columns.map(csvField).join(",")}\n`;

const QUOTE = 0x22;
const PIPE = 0x7c;
const LF = 0x0a;

/** Whole rows and the offset just after each row's newline. */
export type CsvRows = { data: Buffer; ends: number[] };

/**
 * Cuts COPY's CSV output (64 KB chunks, rows split across them) into whole rows. COPY and
 * fast-csv quote alike except: COPY writes an empty string as `""` (and a lone `\.` quoted),
 * fast-csv does not; fast-csv quotes a "|", COPY does not. Rows holding a quote or a "|" are
 * therefore re-quoted the fast-csv way; every other row passes through untouched.
 */
export class CopyRows {
  #carry: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): CsvRows {
    const buf = this.#carry.length ? Buffer.concat([this.#carry, chunk]) : chunk;
    // Nearly every chunk holds no quote and no "|": then every LF ends a row, found by the
    // native indexOf (a byte-by-byte loop here was the process's largest CPU item).
    if (buf.indexOf(QUOTE) < 0 && buf.indexOf(PIPE) < 0) return this.#plain(buf);
    const ends: number[] = [];
    const requote: number[] = []; // indexes (in ends) of rows to re-quote
    let rowStart = 0;
    let quoted = false;
    let special = false;
    for (let i = 0; i < buf.length; i++) {
      const c = buf[i];
      if (c === QUOTE) {
        quoted = !quoted;
        special = true;
      } else if (c === PIPE) special = true;
      else if (c === LF && !quoted) {
        if (special) requote.push(ends.length);
        ends.push(i + 1);
        rowStart = i + 1;
        special = false;
      }
    }
    this.#carry = Buffer.from(buf.subarray(rowStart));
    const data = buf.subarray(0, rowStart);
    return requote.length ? requoteRows({ data, ends }, requote) : { data, ends };
  }

  #plain(buf: Buffer): CsvRows {
    const ends: number[] = [];
    for (let lf = buf.indexOf(LF); lf >= 0; lf = buf.indexOf(LF, lf + 1)) ends.push(lf + 1);
    const rowStart = ends.length ? ends[ends.length - 1]! : 0;
    this.#carry = Buffer.from(buf.subarray(rowStart));
    return { data: buf.subarray(0, rowStart), ends };
  }

  /** Call when COPY is done: its output always ends with a whole row. */
  end(): void {
    if (this.#carry.length) throw new Error("COPY output ended inside a row");
  }
}

function requoteRows(rows: CsvRows, requote: number[]): CsvRows {
  const pieces: Buffer[] = [];
  const ends: number[] = [];
  let from = 0; // start of the rows not yet copied
  let length = 0;
  const take = (piece: Buffer, rowEnds: number[]) => {
    for (const e of rowEnds) ends.push(length + e);
    pieces.push(piece);
    length += piece.length;
  };
  for (const r of requote) {
    const start = r === 0 ? 0 : rows.ends[r - 1]!;
    const before = rows.ends.slice(ends.length, r);
    if (start > from)
      take(
        rows.data.subarray(from, start),
        before.map((e) => e - from),
      );
    const line = rows.data.toString("utf8", start, rows.ends[r]! - 1);
    const fixed = Buffer.from(`${parseCopyRow(line).map(csvField).join(",")}\n`);
    take(fixed, [fixed.length]);
    from = rows.ends[r]!;
  }
  const rest = rows.ends.slice(ends.length);
  if (rest.length)
    take(
      rows.data.subarray(from),
      rest.map((e) => e - from),
    );
  return { data: Buffer.concat(pieces, length), ends };
}

/** The values of one COPY CSV row (no trailing newline): quoted fields unquoted, `""` as `"`. */
export function parseCopyRow(line: string): string[] {
  const values: string[] = [];
  let i = 0;
  for (;;) {
    if (line[i] === '"') {
      let value = "";
      for (i++; ; ) {
        const q = line.indexOf('"', i);
        value += line.slice(i, q);
        i = q + 1;
        if (line[i] !== '"') break;
        value += '"';
        i++;
      }
      values.push(value);
    } else {
      const comma = line.indexOf(",", i);
      const end = comma < 0 ? line.length : comma;
      values.push(line.slice(i, end));
      i = end;
    }
    if (i >= line.length) return values;
    i++; // the comma
  }
}
