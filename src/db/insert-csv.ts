import { Readable } from "node:stream";
import { parse } from "csv-parse";
import { type CsvSource, type Queryable, quoteIdent } from "./db.js";

const BATCH = 5000;

/**
 * `Tx.copyFrom` for PGlite reached over the wire: its session loses protocol sync on COPY FROM
 * STDIN, so the rows go in as batched inserts instead (slow, but the embedded database is small).
 * jsonb_populate_recordset parses each text value with the column's type, as COPY would.
 */
export async function insertCsv(
  db: Queryable,
  table: string,
  columns: readonly string[],
  csv: CsvSource,
): Promise<number> {
  const list = columns.map(quoteIdent).join(", ");
  const insert = (batch: Record<string, string>[]) =>
    db.query(
      `insert into ${table} (${list}) select ${list} from jsonb_populate_recordset(null::${table}, $1::jsonb)`,
      [JSON.stringify(batch)],
    );
  let batch: Record<string, string>[] = [];
  let count = 0;
  for await (const record of Readable.from(csv).pipe(parse({ from_line: 2 }))) {
    batch.push(Object.fromEntries(columns.map((c, i) => [c, (record as string[])[i] ?? ""])));
    if (batch.length >= BATCH) {
      await insert(batch);
      count += batch.length;
      batch = [];
    }
  }
  if (batch.length) await insert(batch);
  return count + batch.length;
}
