import type { Queryable } from "../db/db.js";
import { ConnectorError } from "../errors.js";
import { type CaptureOptions, captureSql, ident, OPS, type ResolvedTable, triggerName } from "./capture.js";
import type { CaptureTable } from "./queries.js";

/**
 * What the source's catalogue says about the capture configuration: checked before `source
 * install` generates anything (a wrong column would make every write to the table fail), and at
 * every delta (a dropped, disabled or recreated trigger would make deltas silently empty).
 */

type Found = { schema: string; name: string; kind: string; columns: string[] };

/** The table a configured name designates (search_path applies to an unqualified name), or a reason. */
async function find(db: Queryable, table: string): Promise<Found | string> {
  try {
    const { rows } = await db.query<Found>(
      `select n.nspname as schema, c.relname as name, c.relkind::text as kind,
         array(select a.attname::text from pg_catalog.pg_attribute a
               where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped order by a.attnum) as columns
       from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
       where c.oid = to_regclass($1)`,
      [ident(table)],
    );
    const found = rows[0];
    if (!found) return `table ${table} does not exist on the source`;
    if (found.kind !== "r" && found.kind !== "p") return `${table} is not a table (capture needs triggers)`;
    return found;
  } catch (err) {
    return `${table} is not a valid table name (${(err as Error).message})`;
  }
}

/** Each configured table with its catalogue names, or the problems (one per wrong table or column). */
async function resolve(
  db: Queryable,
  tables: readonly CaptureTable[],
): Promise<{ resolved: ResolvedTable[]; problems: string[] }> {
  const resolved: ResolvedTable[] = [];
  const problems: string[] = [];
  for (const [i, t] of tables.entries()) {
    const found = await find(db, t.table);
    const at = `stock.capture.tables[${i}]`;
    if (typeof found === "string") {
      problems.push(`${at}: ${found}`);
      continue;
    }
    for (const [role, column] of [
      ["sku", t.sku],
      ["location", t.location],
    ] as const) {
      if (column && !found.columns.includes(column))
        problems.push(
          `${at}: ${role} column "${column}" does not exist in ${t.table} (its columns: ${found.columns.join(", ")})`,
        );
    }
    resolved.push({ ...t, schema: found.schema, name: found.name });
  }
  return { resolved, problems };
}

/** Whether this database is a logical-replication subscriber (its apply worker fires no statement triggers). */
export async function isSubscriber(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ yes: boolean }>(
    `select exists (select 1 from pg_catalog.pg_subscription s
                    join pg_catalog.pg_database d on d.oid = s.subdbid where d.datname = current_database()) as yes`,
  );
  return rows[0]!.yes;
}

export const SUBSCRIBER =
  "the source database is a logical-replication subscriber: replicated writes fire no statement triggers, so trigger capture would miss them. Set stock.capture.mode: full_diff";

/** The tables ready for `captureSql`, or CONFIG_INVALID (exit 2) naming every wrong one. */
export async function checkBeforeInstall(
  db: Queryable,
  tables: readonly CaptureTable[],
): Promise<ResolvedTable[]> {
  const { resolved, problems } = await resolve(db, tables);
  if (await isSubscriber(db)) problems.unshift(SUBSCRIBER);
  if (problems.length) throw new ConnectorError("CONFIG_INVALID", problems.join("; "));
  return resolved;
}

/**
 * Why the installed capture cannot be trusted right now (empty: it can): a table missing or
 * recreated (its triggers are gone), a trigger dropped or disabled, or not ALWAYS when asked,
 * a column renamed, an install from an older release, a subscriber.
 */
export async function captureProblems(
  db: Queryable,
  tables: readonly CaptureTable[],
  opts: CaptureOptions,
): Promise<string[]> {
  const { resolved, problems } = await resolve(db, tables);
  if (await isSubscriber(db)) problems.unshift(SUBSCRIBER);
  const { rows: install } = await db.query<{ t: string | null }>(
    "select to_regclass('stock_sync_capture.install')::text as t",
  );
  if (!install[0]?.t) return [...problems, "change capture was installed by an older release"];
  for (const t of resolved) {
    const names = OPS.map((op) => triggerName(t, op));
    const { rows } = await db.query<{ name: string; enabled: string }>(
      `select tgname::text as name, tgenabled::text as enabled from pg_catalog.pg_trigger
       where tgrelid = to_regclass($1) and tgname = any($2::text[])`,
      [ident(t.table), names],
    );
    const state = new Map(rows.map((r) => [r.name, r.enabled]));
    for (const [i, name] of names.entries()) {
      const enabled = state.get(name);
      const what = `the ${OPS[i]} trigger on ${t.table}`;
      if (enabled === undefined) problems.push(`${what} is missing (dropped, or the table was recreated)`);
      else if (enabled === "D") problems.push(`${what} is disabled`);
      else if (enabled === "R") problems.push(`${what} fires only under session_replication_role = replica`);
      else if (opts.enableAlways && enabled !== "A")
        problems.push(`${what} is not ENABLE ALWAYS (stock.capture.enable_always is set)`);
    }
  }
  return problems;
}

/** Checks the catalogue, then installs (or re-installs) capture in one transaction. */
export async function installCapture(
  db: Queryable,
  capture: { tables: readonly CaptureTable[]; enable_always: boolean },
): Promise<ResolvedTable[]> {
  const resolved = await checkBeforeInstall(db, capture.tables);
  await db.query(captureSql(resolved, { enableAlways: capture.enable_always }));
  return resolved;
}
