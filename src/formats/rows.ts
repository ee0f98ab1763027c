import { createReadStream } from "node:fs";
import { createGunzip } from "node:zlib";
import { parseCopyRow } from "../export/copy-csv.ts";
import type { Row } from "./fields.ts";

/** The key files or parts a full wrote (full-read.ts `SentFiles`): CSV with a header row. */
export type RowFiles = { files: readonly { path: string }[]; columns: readonly string[]; gzip: boolean };

/**
 * A full's rows again, from its CSV files, a chunk at a time (never all in memory; a batch per
 * chunk, as a promise per row cost more than rendering it). Rows without a quote split on
 * commas; the others (and a quoted newline, joined back) are parsed.
 */
export async function* rowsFromFiles(src: RowFiles): AsyncIterable<Row[]> {
  const at = (name: string) => src.columns.indexOf(name);
  const [sku, location, quantity] = [at("sku"), at("location"), at("quantity")];
  for (const file of src.files) {
    const raw = createReadStream(file.path);
    const input = src.gzip ? raw.pipe(createGunzip()) : raw;
    raw.on("error", (err) => input.destroy(err));
    let header = true;
    let carry = "";
    for await (const chunk of input as AsyncIterable<Buffer>) {
      const text = carry + chunk.toString("utf8");
      const batch: Row[] = [];
      let from = 0;
      for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n", nl + 1)) {
        const line = text.slice(from, nl);
        if (line.includes('"') && quotesOpen(line)) continue; // a quoted newline: the row goes on
        from = nl + 1;
        if (header) {
          header = false;
          continue;
        }
        if (line === "") continue;
        const cells = line.includes('"') ? parseCopyRow(line) : line.split(",");
        batch.push({ sku: cells[sku]!, location: cells[location]!, quantity: Number(cells[quantity]) });
      }
      carry = text.slice(from);
      if (batch.length) yield batch;
    }
    if (carry.trim() !== "") throw new Error(`${file.path} ends inside a row`);
  }
}

/** An odd number of quotes: the line ends inside a quoted field. */
function quotesOpen(text: string): boolean {
  let n = 0;
  for (let i = text.indexOf('"'); i >= 0; i = text.indexOf('"', i + 1)) n++;
  return n % 2 === 1;
}

const BATCH = 1000;

/** A delta's rows (already in memory) in batches, as fresh objects the mapping may change. */
export async function* rowsFromArray(rows: readonly Row[]): AsyncIterable<Row[]> {
  for (let i = 0; i < rows.length; i += BATCH)
    yield rows.slice(i, i + BATCH).map((r) => ({ sku: r.sku, location: r.location, quantity: r.quantity }));
}
