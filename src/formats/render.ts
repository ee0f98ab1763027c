import { type BodyConfig, columnPairs } from "./config.ts";
import { LATE_FIELDS, type MessageFields, type Row } from "./fields.ts";
import { compileTemplate, evaluateTemplate, type Template } from "./template.ts";

/**
 * A subscription's body as a pure function of rows and message fields (STYLE: rendering apart
 * from reading and sending, so `--out --subscription` and delivery run the same code).
 * csv, ndjson and json without a template are additive: head + rows + tail, so a message can be
 * cut by bytes as rows arrive; a template is evaluated over the whole message.
 */
export type StockBody = {
  format: BodyConfig["format"];
  contentType: string;
  rowsPerMessage: number;
  maxBytes: number | null;
  /** The body names record_id: computed only then (a hash per row). */
  needsRecordId: boolean;
  /** The body names sequence, parts (or part, in a template): rendered again once they are known. */
  late: boolean;
  /** The row's fields are also message fields (rows_per_message: 1). */
  perRow: boolean;
  /** Sent as one file part of a multipart/form-data body (multipart.ts); null: as it is. */
  multipart: { field: string; filename: string } | null;
  render(rows: readonly Row[], msg: MessageFields): Promise<Buffer>;
  /** Additive bodies: the bytes of one row and of the rest, for cutting as rows arrive. */
  additive: Additive | null;
};

export type Additive = {
  head(msg: MessageFields): string;
  row(r: Row, msg: MessageFields): string;
  sep: string;
  tail(msg: MessageFields): string;
};

const CONTENT_TYPES = { csv: "text/csv", ndjson: "application/x-ndjson", json: "application/json" } as const;

/** Compiles a body block (already validated by config.ts); `fallbackRows` when rows_per_message is unset. */
export function compileBody(cfg: BodyConfig, fallbackRows: number): StockBody {
  const template = cfg.template === null ? null : compileTemplate(cfg.template);
  const fields = new Set(template ? template.names : columnPairs(cfg.columns).map(([, f]) => f));
  const additive = template ? null : additiveFor(cfg);
  const envelopeLate = cfg.format === "json" && !template; // the default envelope carries sequence and parts
  const lateFields = template ? [...LATE_FIELDS, "part"] : LATE_FIELDS;
  const rowsPerMessage = cfg.rows_per_message ?? fallbackRows;
  return {
    format: cfg.format,
    contentType: CONTENT_TYPES[cfg.format],
    rowsPerMessage,
    maxBytes: cfg.max_bytes,
    needsRecordId: fields.has("record_id"),
    late: envelopeLate || lateFields.some((f) => fields.has(f)),
    perRow: rowsPerMessage === 1,
    multipart: cfg.multipart ?? null,
    additive,
    render: template
      ? (rows, msg) => renderTemplate(template, rows, msg, rowsPerMessage === 1)
      : async (rows, msg) => Buffer.from(joinAdditive(additive!, rows, msg)),
  };
}

function joinAdditive(a: Additive, rows: readonly Row[], msg: MessageFields): string {
  return a.head(msg) + rows.map((r) => a.row(r, msg)).join(a.sep) + a.tail(msg);
}

async function renderTemplate(t: Template, rows: readonly Row[], msg: MessageFields, perRow: boolean) {
  // with one row per message its fields are also top-level: `{"quantity": quantity}` (VTEX)
  const input = perRow && rows[0] ? { ...rows[0], ...msg, rows } : { ...msg, rows };
  return Buffer.from(await evaluateTemplate(t, input));
}

/** A field's value: the row's own, else the message's. */
const fieldValue = (field: string, r: Row, msg: MessageFields): unknown =>
  field in r ? r[field as keyof Row] : msg[field as keyof MessageFields];

function additiveFor(cfg: BodyConfig): Additive {
  const cols = columnPairs(cfg.columns);
  if (cfg.format === "csv") {
    const d = cfg.delimiter;
    const cell = csvCell(d);
    const header = cfg.header ? `${cols.map(([out]) => cell(out)).join(d)}\n` : "";
    return {
      head: () => header,
      row: (r, msg) => `${cols.map(([, f]) => cell(String(fieldValue(f, r, msg) ?? ""))).join(d)}\n`,
      sep: "",
      tail: () => "",
    };
  }
  // the object's JSON written directly (same text as JSON.stringify of it: keys in order,
  // undefined left out), without building an object per row: twice as fast for a 1M-row full
  const keys = cols.map(([out]) => `${JSON.stringify(out)}:`);
  const fields = cols.map(([, f]) => f);
  const object = (r: Row, msg: MessageFields) => {
    let out = "{";
    for (let i = 0; i < fields.length; i++) {
      const v = fieldValue(fields[i]!, r, msg);
      if (v === undefined) continue;
      out += `${out.length > 1 ? "," : ""}${keys[i]}${JSON.stringify(v)}`;
    }
    return `${out}}`;
  };
  if (cfg.format === "ndjson")
    return { head: () => "", row: (r, m) => `${object(r, m)}\n`, sep: "", tail: () => "" };
  return {
    head: (m) => JSON.stringify({ ...m, rows: [] }).slice(0, -2), // ends with `"rows":[`
    row: object,
    sep: ",",
    tail: () => "]}",
  };
}

/** RFC 4180 quoting with the configured delimiter: quoted when it holds the delimiter, a quote or a newline. */
function csvCell(delimiter: string) {
  return (v: string) =>
    v.includes('"') || v.includes(delimiter) || v.includes("\n") || v.includes("\r")
      ? `"${v.replaceAll('"', '""')}"`
      : v;
}
