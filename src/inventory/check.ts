import type { Config } from "../config/index.js";
import type { Db, Queryable } from "../db/db.js";
import { keyOf } from "../export/diff.js";
import { columnProblems, wholeQuantity } from "../export/quantity.js";
import { captureInstalled } from "./capture.js";
import { bindUsed } from "./params.js";
import { SELLABLE_MATCHING, type SourceQueries, sourceQueries } from "./queries.js";

/**
 * `stock-sync source check`: runs the configured queries on the real source, a sample at a time,
 * and says in plain words what would go wrong in production: missing or mistyped columns,
 * duplicate keys, `sellable_keys` disagreeing with `sellable`, tables the queries read that
 * change capture does not watch. Findings are data; the command prints them.
 */

export type Finding = { ok: boolean; text: string };

// Each check on its own connection and transaction: a failing query must not abort the others.
export type CheckDeps = { source: Db; stock: Config["stock"]; now: Date };

const SAMPLE = 1000;
const COMPARE = 200;
const EXAMPLES = 5;

type Named = { name: string; sql: string; values: unknown[] };
type Row = { sku: string; location: string; quantity: unknown } & Record<string, unknown>;

export async function checkSource(deps: CheckDeps): Promise<Finding[]> {
  const q = sourceQueries(deps.stock.queries);
  const days = deps.stock.sellable.include_future_days;
  const out: Finding[] = [];
  const sellable: Named = { name: "stock.queries.sellable", sql: q.sellable, values: [days] };
  const sample = await sampleOf(deps, sellable, out);
  if (sample) {
    await uniqueKeys(deps, sellable, out);
    await keysAgree(deps, q, days, sample, out);
  }
  if (q.timeCandidates) await timeCandidates(deps, q.timeCandidates, days, out);
  await coverage(deps, q, days, out);
  return out;
}

/** Runs the query with a LIMIT, checks its columns and quantities; null when it cannot run. */
async function sampleOf(deps: CheckDeps, query: Named, out: Finding[]): Promise<Row[] | null> {
  const rows = await attempt(out, query.name, async () => {
    const problems = columnProblems(query.name, await describe(deps, query), deps.stock.format.columns);
    for (const text of problems) out.push({ ok: false, text });
    if (problems.length) return null;
    const b = bindUsed(`select * from (${query.sql}\n) as s limit ${SAMPLE}`, query.values);
    return (await deps.source.query<Row>(b.text, b.values)).rows;
  });
  if (!rows) return null;
  const bad = rows.flatMap((r) => {
    try {
      wholeQuantity(r.quantity, query.name, r);
      return [];
    } catch (err) {
      return [(err as Error).message];
    }
  });
  if (bad.length) out.push({ ok: false, text: `${bad[0]} (${bad.length} of ${rows.length} sampled rows)` });
  else
    out.push({
      ok: true,
      text: `${query.name} runs: ${rows.length} rows sampled, columns and quantities as expected`,
    });
  return rows;
}

/** Every (sku, location) once: the OMS would get two quantities for one key, in any order. */
async function uniqueKeys(deps: CheckDeps, query: Named, out: Finding[]): Promise<void> {
  const b = bindUsed(
    `select sku, location, count(*)::int as n from (${query.sql}\n) as s
     group by sku, location having count(*) > 1 order by n desc, sku, location limit ${EXAMPLES}`,
    query.values,
  );
  const dupes = await attempt(
    out,
    query.name,
    async () => (await deps.source.query<Row & { n: number }>(b.text, b.values)).rows,
  );
  if (!dupes) return;
  if (!dupes.length) out.push({ ok: true, text: `${query.name}: every (sku, location) key appears once` });
  else
    out.push({
      ok: false,
      text: `${query.name} returns some keys more than once, e.g. ${dupes.map((d) => `${d.sku} at ${d.location} (${d.n} rows)`).join(", ")}: group by sku and location (sum the quantities) so each key has one row`,
    });
}

/** `sellable_keys` for sampled keys must give exactly what `sellable` gives for them. */
async function keysAgree(deps: CheckDeps, q: SourceQueries, days: number, sample: Row[], out: Finding[]) {
  const name = "stock.queries.sellable_keys";
  const some = sample.slice(0, COMPARE);
  const keys: Named = {
    name,
    sql: q.sellableKeys,
    values: [days, some.map((r) => r.sku), some.map((r) => r.location)],
  };
  const problems = await attempt(out, name, async () =>
    columnProblems(name, await describe(deps, keys), deps.stock.format.columns),
  );
  if (!problems) return;
  for (const text of problems) out.push({ ok: false, text });
  if (problems.length) return;
  const b = bindUsed(keys.sql, keys.values);
  const rows = await attempt(out, name, async () => (await deps.source.query<Row>(b.text, b.values)).rows);
  if (!rows) return;
  const want = new Map(some.map((r) => [keyOf(r.sku, r.location), String(r.quantity)]));
  const got = new Map(rows.map((r) => [keyOf(r.sku, r.location), String(r.quantity)]));
  const show = (k: string) => k.replace("\u0000", " at ");
  const missing = [...want.keys()].filter((k) => !got.has(k));
  const extra = [...got.keys()].filter((k) => !want.has(k));
  const differ = [...want].filter(([k, v]) => got.has(k) && Number(got.get(k)) !== Number(v));
  if (missing.length)
    out.push({
      ok: false,
      text: `${name} leaves out ${missing.length} of ${want.size} keys given to it (e.g. ${missing.slice(0, EXAMPLES).map(show).join(", ")}): it must return every key of $2/$3 that sellable returns`,
    });
  if (extra.length)
    out.push({
      ok: false,
      text: `${name} returns ${extra.length} keys it was not given (e.g. ${extra.slice(0, EXAMPLES).map(show).join(", ")}): filter on the (sku, location) pairs of $2 and $3`,
    });
  if (differ.length)
    out.push({
      ok: false,
      text: `${name} and sellable disagree on ${differ.length} of ${want.size} keys (e.g. ${differ
        .slice(0, EXAMPLES)
        .map(([k, v]) => `${show(k)}: ${v} vs ${got.get(k)}`)
        .join(", ")}): both must compute the same quantity`,
    });
  if (!missing.length && !extra.length && !differ.length)
    out.push({ ok: true, text: `${name} agrees with sellable on ${want.size} sampled keys` });
}

async function timeCandidates(deps: CheckDeps, sql: string, days: number, out: Finding[]) {
  const name = "stock.queries.time_candidates";
  const since = new Date(deps.now.getTime() - 86_400_000);
  const b = bindUsed(`select * from (${sql}\n) as s limit ${SAMPLE}`, [since, deps.now, days]);
  const cols = await attempt(out, name, async () => {
    await deps.source.query(b.text, b.values);
    return (await describe(deps, { name, sql, values: [since, deps.now, days] })).map((c) => c.name);
  });
  if (!cols) return;
  const missing = ["sku", "location"].filter((c) => !cols.includes(c));
  out.push(
    missing.length
      ? {
          ok: false,
          text: `${name} has no column ${missing.map((c) => `"${c}"`).join(" or ")} (its columns: ${cols.join(", ")})`,
        }
      : { ok: true, text: `${name} runs (over the last day)` },
  );
}

/** The tables the queries read (from their plans) against the tables change capture watches. */
async function coverage(deps: CheckDeps, q: SourceQueries, days: number, out: Finding[]) {
  if (deps.stock.capture.mode === "full_diff") {
    out.push({
      ok: true,
      text: "stock.capture.mode is full_diff: every delta compares everything, no capture tables needed",
    });
    return;
  }
  const queries: Named[] = [
    { name: "stock.queries.sellable", sql: q.sellable, values: [days] },
    { name: "stock.queries.sellable_keys", sql: q.sellableKeys, values: [days, [], []] },
  ];
  if (deps.stock.queries.sellable_matching.trim())
    queries.push({ name: SELLABLE_MATCHING, sql: q.sellableMatching, values: [days, [], []] });
  const read = new Map<string, string[]>();
  for (const query of queries) {
    const tables = await attempt(out, query.name, () => planTables(deps.source, query));
    for (const t of tables ?? []) read.set(t, [...(read.get(t) ?? []), query.name]);
  }
  const watched = await resolve(
    deps.source,
    deps.stock.capture.tables.map((t) => t.table),
  );
  const unwatched = [...read.keys()].filter((t) => !watched.has(t)).sort();
  if (unwatched.length)
    out.push({
      ok: false,
      text: `change capture does not watch ${unwatched.join(", ")}, read by ${[...new Set(unwatched.flatMap((t) => read.get(t)!))].join(" and ")}: a write there would never reach a delta (only the next full). Add ${unwatched.length > 1 ? "them" : "it"} to stock.capture.tables and run \`stock-sync source install\``,
    });
  else if (read.size)
    out.push({
      ok: true,
      text: `change capture watches every table the queries read (${[...read.keys()].sort().join(", ")})`,
    });
  if (!(await captureInstalled(deps.source)))
    out.push({
      ok: false,
      text: "change capture is not installed on the source: run `stock-sync source install --apply` (or set stock.capture.mode: full_diff)",
    });
}

/** schema.table of every table in the query's plan (views expand to their tables). */
async function planTables(db: Queryable, query: Named): Promise<string[]> {
  const b = bindUsed(query.sql, query.values);
  const { rows } = await db.query<{ "QUERY PLAN": unknown }>(
    `explain (verbose, format json) ${b.text}`,
    b.values,
  );
  const found = new Set<string>();
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === "object") {
      const n = node as Record<string, unknown>;
      if (typeof n["Relation Name"] === "string") found.add(`${n.Schema}.${n["Relation Name"]}`);
      Object.values(n).forEach(walk);
    }
  };
  walk(rows[0]?.["QUERY PLAN"]);
  return [...found];
}

/** Configured table names as schema.table (an unqualified name is found on the search_path). */
async function resolve(db: Queryable, tables: string[]): Promise<Set<string>> {
  const { rows } = await db.query<{ name: string | null }>(
    `select n.nspname || '.' || c.relname as name
     from unnest($1::text[]) as t(name)
     left join pg_class c on c.oid = to_regclass(t.name) left join pg_namespace n on n.oid = c.relnamespace`,
    [tables],
  );
  return new Set(rows.map((r) => r.name).filter((n): n is string => n !== null));
}

const describe = (deps: CheckDeps, q: Named) => {
  const b = bindUsed(q.sql, q.values);
  return deps.source.tx((tx) => tx.describe(b.text, b.values), { readOnly: true });
};

/** Runs `fn`; a database error becomes a finding naming the query, and null. */
async function attempt<T>(out: Finding[], name: string, fn: () => Promise<T>): Promise<T | null> {
  try {
    return await fn();
  } catch (err) {
    out.push({ ok: false, text: `${name} fails on the source: ${(err as Error).message}` });
    return null;
  }
}
