import { createHash } from "node:crypto";
import type { Queryable } from "../db/db.js";

/**
 * Change capture on the source: statement-level triggers on every input table append the
 * affected keys with the writing transaction's id (xid8) to stock_sync_capture.changes. A delta
 * reads the rows its previous snapshot could not see, so a long transaction that commits late is
 * still caught, and rows sharing a timestamp cannot be skipped (there is no timestamp).
 * A null sku or location means "every key of this location / sku" (items, locations); a row with
 * `truncated` set means "every key" (a TRUNCATE has no transition table to read keys from).
 *
 * The trigger functions are SECURITY DEFINER with a fixed search_path: they run as the role that
 * installed them, so the retailer's own roles need no rights on stock_sync_capture, and a
 * writer's search_path cannot redirect them. Tables and columns are checked against the
 * catalogue first (capture-catalog.ts): a wrong column name would break every write to the table.
 */

/** A configured capture table, found in the catalogue: `schema` and `name` as stored there. */
export type ResolvedTable = {
  table: string;
  schema: string;
  name: string;
  sku?: string | undefined;
  location?: string | undefined;
};

export type CaptureOptions = { enableAlways: boolean };

export const OPS = ["insert", "update", "delete", "truncate"] as const;
export type Op = (typeof OPS)[number];

export const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** A configured name (`schema.table`, each part as written) quoted part by part. */
export const ident = (name: string) => name.split(".").map(quoteIdent).join(".");

const qualified = (t: ResolvedTable) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;

/**
 * Trigger (and function) name for one table and operation: readable prefix, then a hash of the
 * exact schema and table name, so two long names sharing 63 characters still differ, and the
 * same table gets the same names at every install (a re-install replaces, never adds).
 */
export function triggerName(t: { schema: string; name: string }, op: Op): string {
  const hash = createHash("sha256").update(`${t.schema}\u0000${t.name}`).digest("hex").slice(0, 10);
  const slug = `${t.schema}_${t.name}`.replace(/\W/g, "_").slice(0, 24);
  return `stock_sync_${slug}_${hash}_${op}`;
}

/** Names of the release before hashed names (cut at 63: long names collided); dropped at install. */
const legacyName = (table: string, op: string) =>
  `stock_sync_capture_${table.replace(/\W/g, "_")}_${op}`.slice(0, 63);

const SCHEMA = `create schema if not exists stock_sync_capture;
create table if not exists stock_sync_capture.changes (
  xid      xid8 not null default pg_current_xact_id(),
  sku      text,
  location text
);
alter table stock_sync_capture.changes add column if not exists truncated text;
create index if not exists changes_by_xid on stock_sync_capture.changes (xid);
-- Each install bumps the generation: a consumer last read under an older one compares every key.
create table if not exists stock_sync_capture.install (
  id            boolean primary key default true check (id),
  generation    bigint not null,
  installed_at  timestamptz not null,
  enable_always boolean not null
);
-- Every deployment reading the changes (stock.capture.consumer): rows are pruned below the slowest.
create table if not exists stock_sync_capture.consumers (
  name       text primary key,
  position   xid8 not null,
  generation bigint,
  updated_at timestamptz not null default now()
);
create or replace function stock_sync_capture.truncated() returns trigger language plpgsql
  security definer set search_path = pg_catalog, pg_temp as $$
begin
  insert into stock_sync_capture.changes (sku, location, truncated)
  values (null, null, quote_ident(tg_table_schema) || '.' || quote_ident(tg_table_name));
  return null;
end $$;`;

/**
 * The install script for tables already checked against the catalogue. Sent as one simple query
 * it is one transaction; `transaction: true` wraps it in begin/commit for psql.
 */
export function captureSql(
  tables: readonly ResolvedTable[],
  opts: CaptureOptions & { transaction?: boolean },
): string {
  const parts = [SCHEMA];
  if (opts.transaction) parts.unshift("begin;");
  for (const t of tables) parts.push(...tableSql(t, opts));
  // After every legacy trigger is gone: a legacy function could serve several tables.
  for (const t of tables)
    for (const op of ["insert", "update", "delete"])
      parts.push(
        `drop function if exists stock_sync_capture.${quoteIdent(legacyName(t.table, op))}() cascade;`,
      );
  parts.push(
    `insert into stock_sync_capture.install (generation, installed_at, enable_always) values (1, now(), ${opts.enableAlways})
  on conflict (id) do update set generation = stock_sync_capture.install.generation + 1,
    installed_at = now(), enable_always = excluded.enable_always;`,
  );
  if (opts.transaction) parts.push("commit;");
  return `${parts.join("\n")}\n`;
}

function tableSql(t: ResolvedTable, opts: CaptureOptions): string[] {
  const on = qualified(t);
  const col = (rows: string, c: string | undefined) => (c ? `${rows}.${quoteIdent(c)}::text` : "null");
  const select = (rows: string) => `select ${col(rows, t.sku)}, ${col(rows, t.location)} from ${rows}`;
  const sources: Record<Exclude<Op, "truncate">, string[]> = {
    insert: ["new_rows"],
    update: ["new_rows", "old_rows"],
    delete: ["old_rows"],
  };
  const out: string[] = [];
  for (const op of ["insert", "update", "delete"] as const)
    out.push(`drop trigger if exists ${quoteIdent(legacyName(t.table, op))} on ${on};`);
  for (const op of OPS) {
    const name = quoteIdent(triggerName(t, op));
    out.push(`drop trigger if exists ${name} on ${on};`);
    if (op === "truncate") {
      out.push(
        `create trigger ${name} after truncate on ${on} for each statement execute function stock_sync_capture.truncated();`,
      );
    } else {
      const rows = sources[op];
      const fn = `stock_sync_capture.${name}`;
      const referencing = rows.map((r) => `${r === "new_rows" ? "new" : "old"} table as ${r}`).join(" ");
      out.push(
        `create or replace function ${fn}() returns trigger language plpgsql
  security definer set search_path = pg_catalog, pg_temp as $$
begin
  insert into stock_sync_capture.changes (sku, location) ${rows.map(select).join(" union ")};
  return null;
end $$;`,
        `create trigger ${name} after ${op} on ${on}
  referencing ${referencing} for each statement execute function ${fn}();`,
      );
    }
    // ALWAYS: fires also under session_replication_role = replica (replication tools, bulk loaders).
    if (opts.enableAlways) out.push(`alter table ${on} enable always trigger ${name};`);
  }
  return out;
}

/** Whether the capture tables exist on the source (an install of this release or an older one). */
export async function captureInstalled(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ t: string | null }>(
    "select to_regclass('stock_sync_capture.changes')::text as t",
  );
  return Boolean(rows[0]?.t);
}
