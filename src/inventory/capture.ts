import type { Queryable } from "../db/db.js";
import { ConnectorError } from "../errors.js";
import type { CaptureTable } from "./queries.js";

/**
 * Change capture on the source: statement-level triggers on every input table append the
 * affected keys with the writing transaction's id (xid8) to stock_sync_capture.changes. A delta
 * reads the rows its previous snapshot could not see, so a long transaction that commits late is
 * still caught, and rows sharing a timestamp cannot be skipped (there is no timestamp).
 * A null sku or location means "every key of this location / sku" (items, locations).
 */
const ident = (name: string) =>
  name
    .split(".")
    .map((p) => `"${p.replaceAll('"', '""')}"`)
    .join(".");

const triggerName = (t: CaptureTable, op: string) =>
  `stock_sync_capture_${t.table.replace(/\W/g, "_")}_${op}`.slice(0, 63);

export function captureSql(tables: readonly CaptureTable[]): string {
  const parts = [
    `create schema if not exists stock_sync_capture;`,
    `create table if not exists stock_sync_capture.changes (
  xid      xid8 not null default pg_current_xact_id(),
  sku      text,
  location text
);`,
    `create index if not exists changes_by_xid on stock_sync_capture.changes (xid);`,
  ];
  for (const t of tables) {
    if (!t.sku && !t.location)
      throw new ConnectorError("CONFIG_INVALID", `stock.capture.tables: ${t.table} needs sku or location`);
    const sku = t.sku ? `r.${ident(t.sku)}::text` : "null";
    const loc = t.location ? `r.${ident(t.location)}::text` : "null";
    for (const [op, rows] of [
      ["insert", ["new_rows"]],
      ["update", ["new_rows", "old_rows"]],
      ["delete", ["old_rows"]],
    ] as const) {
      const fn = `stock_sync_capture.${triggerName(t, op)}`;
      const select = rows
        .map((r) => `select ${sku.replace("r.", `${r}.`)}, ${loc.replace("r.", `${r}.`)} from ${r}`)
        .join(" union ");
      const referencing = rows.map((r) => `${r === "new_rows" ? "new" : "old"} table as ${r}`).join(" ");
      parts.push(
        `create or replace function ${fn}() returns trigger language plpgsql as $$
begin
  insert into stock_sync_capture.changes (sku, location) ${select};
  return null;
end $$;`,
        `drop trigger if exists ${triggerName(t, op)} on ${ident(t.table)};`,
        `create trigger ${triggerName(t, op)} after ${op} on ${ident(t.table)}
  referencing ${referencing} for each statement execute function ${fn}();`,
      );
    }
  }
  return `${parts.join("\n")}\n`;
}

/** Whether the capture table exists on the source. */
export async function captureInstalled(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ t: string | null }>(
    "select to_regclass('stock_sync_capture.changes')::text as t",
  );
  return Boolean(rows[0]?.t);
}

export type ChangedKeys = { exact: { sku: string; location: string }[]; skus: string[]; locations: string[] };

/** Keys written by transactions that the previous snapshot could not see (and ours can). */
export async function changedSince(tx: Queryable, previous: string): Promise<ChangedKeys> {
  const { rows } = await tx.query<{ sku: string | null; location: string | null }>(
    `select distinct sku, location from stock_sync_capture.changes
     where xid >= pg_snapshot_xmin($1::pg_snapshot) and not pg_visible_in_snapshot(xid, $1::pg_snapshot)`,
    [previous],
  );
  const out: ChangedKeys = { exact: [], skus: [], locations: [] };
  for (const r of rows) {
    if (r.sku !== null && r.location !== null) out.exact.push({ sku: r.sku, location: r.location });
    else if (r.sku !== null) out.skus.push(r.sku);
    else if (r.location !== null) out.locations.push(r.location);
  }
  return out;
}

/** Rows every later snapshot can see are no longer needed. */
export const pruneChanges = (db: Queryable, snapshot: string) =>
  db.query("delete from stock_sync_capture.changes where xid < pg_snapshot_xmin($1::pg_snapshot)", [
    snapshot,
  ]);
