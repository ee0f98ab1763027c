import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";
import { createGunzip } from "node:zlib";
import { parseCopyRow } from "../export/copy-csv.ts";
import type { Row } from "./fields.ts";

/** The key files or parts a full wrote (full-read.ts `SentFiles`): CSV with a header row. */
export type RowFiles = { files: readonly { path: string }[]; columns: readonly string[]; gzip: boolean };

/**
 * A full's rows again, from its CSV files, one file at a time (never all in memory). Rows
 * without a quote split on commas; the others (and a quoted newline, joined back) are parsed.
 */
export async function* rowsFromFiles(src: RowFiles): AsyncIterable<Row> {
  const at = (name: string) => src.columns.indexOf(name);
  const [sku, location, quantity] = [at("sku"), at("location"), at("quantity")];
  for (const file of src.files) {
    const raw = createReadStream(file.path);
    const input = src.gzip ? raw.pipe(createGunzip()) : raw;
    raw.on("error", (err) => input.destroy(err));
    let header = true;
    let held = "";
    for await (const line of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
      if (header) {
        header = false;
        continue;
      }
      const text = held ? `${held}\n${line}` : line;
      if (text.includes('"') && quotesOpen(text)) {
        held = text;
        continue;
      }
      held = "";
      if (text === "") continue;
      const cells = text.includes('"') ? parseCopyRow(text) : text.split(",");
      yield { sku: cells[sku]!, location: cells[location]!, quantity: Number(cells[quantity]) };
    }
  }
}

/** An odd number of quotes: the line ends inside a quoted field. */
function quotesOpen(text: string): boolean {
  let n = 0;
  for (let i = text.indexOf('"'); i >= 0; i = text.indexOf('"', i + 1)) n++;
  return n % 2 === 1;
}

export async function* rowsFromArray(rows: readonly Row[]): AsyncIterable<Row> {
  for (const r of rows) yield { sku: r.sku, location: r.location, quantity: r.quantity };
}
