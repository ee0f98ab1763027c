/**
 * The connector passes each source query a fixed list of values ($1 days, $2 skus, …), but a
 * query for one's own schema often needs fewer (no future stock: no $1). PostgreSQL refuses a
 * value with no placeholder ("bind message supplies 1 parameters, but prepared statement
 * requires 0") and cannot type a placeholder it never sees, so the unused values are dropped and
 * the placeholders renumbered. Pure: a scanner that skips literals, quoted names and comments.
 */

/** `sql` with only the placeholders it uses, numbered from $1, and their values in that order. */
export function bindUsed(sql: string, values: readonly unknown[]): { text: string; values: unknown[] } {
  const found = placeholders(sql);
  const used = [...new Set(found.map((p) => p.n))].sort((a, b) => a - b);
  if (used.every((n, i) => n === i + 1) && used.length === values.length)
    return { text: sql, values: [...values] };
  const renumber = new Map(used.map((n, i) => [n, i + 1]));
  let text = "";
  let from = 0;
  for (const p of found) {
    text += `${sql.slice(from, p.at)}$${renumber.get(p.n)}`;
    from = p.at + p.length;
  }
  text += sql.slice(from);
  // A placeholder past the values is the query's mistake: PostgreSQL names it.
  return { text, values: used.map((n) => values[n - 1]) };
}

/** The highest placeholder number a query uses (0 for none). */
export const highestPlaceholder = (sql: string) => Math.max(0, ...placeholders(sql).map((p) => p.n));

type Placeholder = { at: number; length: number; n: number };

function placeholders(sql: string): Placeholder[] {
  const out: Placeholder[] = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (c === "'" || c === '"') i = closing(sql, i + 1, c);
    else if (c === "-" && next === "-") i = lineEnd(sql, i);
    else if (c === "/" && next === "*") i = commentEnd(sql, i);
    else if (c === "$") {
      const digits = /^\$(\d+)/.exec(sql.slice(i, i + 12));
      const tag = digits ? null : /^\$([A-Za-z_][A-Za-z_0-9]*)?\$/.exec(sql.slice(i, i + 64));
      if (digits && !/[\w$]/.test(sql[i - 1] ?? "")) {
        out.push({ at: i, length: digits[0].length, n: Number(digits[1]) });
        i += digits[0].length;
      } else if (tag && !/[\w$]/.test(sql[i - 1] ?? "")) {
        const end = sql.indexOf(tag[0], i + tag[0].length);
        i = end < 0 ? sql.length : end + tag[0].length;
      } else i++;
    } else i++;
  }
  return out;
}

/** Past the closing quote (a doubled quote is part of the literal). */
function closing(sql: string, i: number, quote: string): number {
  for (;;) {
    const q = sql.indexOf(quote, i);
    if (q < 0) return sql.length;
    if (sql[q + 1] !== quote) return q + 1;
    i = q + 2;
  }
}

const lineEnd = (sql: string, i: number) => {
  const nl = sql.indexOf("\n", i);
  return nl < 0 ? sql.length : nl + 1;
};

/** Past a block comment; PostgreSQL's nest. */
function commentEnd(sql: string, i: number): number {
  let depth = 0;
  while (i < sql.length) {
    if (sql.startsWith("/*", i)) {
      depth++;
      i += 2;
    } else if (sql.startsWith("*/", i)) {
      depth--;
      i += 2;
      if (depth === 0) return i;
    } else i++;
  }
  return i;
}

/** A query as written in the config, ready to be wrapped: no trailing `;`, no trailing blanks. */
export const trimQuery = (sql: string) => sql.trim().replace(/(\s*;)+$/, "");

/** `bindUsed` as the (text, values) arguments of a query call. */
export const bound = (sql: string, values: readonly unknown[]): [string, unknown[]] => {
  const b = bindUsed(sql, values);
  return [b.text, b.values];
};
