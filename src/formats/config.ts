import { z } from "zod";
import { EVENT_FIELDS, LATE_FIELDS, MESSAGE_FIELDS, STOCK_FIELDS } from "./fields.ts";
import { compileTemplate } from "./template.ts";

/**
 * The `body:` and `map:` blocks of a subscription (issue 14), as zod schemas. schema.ts only
 * adds them to Subscription and calls `checkBodies`: the rules live here, beside the renderer.
 */

const MAX_ROWS_PER_MESSAGE = 1_000_000;

// `{store: location}` (output name -> field) or a plain field name
const Column = z.union([
  z.string().min(1),
  z
    .record(z.string().min(1), z.string().min(1))
    .refine(
      (c) => Object.keys(c).length === 1,
      "expected one output name and its field, like {qty: quantity}",
    ),
]);

/** The body block as configured; `columns` become pairs [output name, field]. */
export function bodySchema<T extends z.ZodType<number | null>, I extends z.ZodType<number>>(
  size: T,
  integer: (min: number, max: number) => I,
) {
  return z
    .strictObject({
      format: z.enum(["csv", "ndjson", "json"]).default("csv"),
      columns: z.array(Column).min(1).optional(),
      header: z
        .preprocess((v) => (v === "true" ? true : v === "false" ? false : v), z.boolean())
        .default(true),
      delimiter: z
        .string()
        .refine(
          (d) => d.length === 1 && !/["\r\n]/.test(d),
          'expected one character (not a quote or newline), like ";"',
        )
        .default(","),
      // null accepted too: `config check` prints the parsed config, which must load again
      template: z.string().min(1).nullable().optional(),
      rows_per_message: integer(1, MAX_ROWS_PER_MESSAGE).nullable().optional(),
      max_bytes: size.nullable().optional(),
      // the body as one file part of a multipart/form-data request (Salesforce OCI's uploads)
      multipart: z
        .strictObject({
          field: z.string().regex(/^[A-Za-z0-9_.-]+$/, "expected a form field name"),
          filename: z.string().regex(/^[^"\r\n\\/]+$/, "expected a file name without quotes or slashes"),
        })
        .nullable()
        .optional(),
    })
    .transform((b) => ({
      ...b,
      multipart: b.multipart ?? null,
      columns: b.columns ?? ["sku", "location", "quantity"],
      template: b.template ?? null,
      rows_per_message: b.rows_per_message ?? null,
      max_bytes: b.max_bytes ?? null,
    }));
}

/** Columns as [output name, field] pairs. */
export const columnPairs = (columns: BodyConfig["columns"]): [string, string][] =>
  columns.map((c): [string, string] =>
    typeof c === "string" ? [c, c] : (Object.entries(c)[0] as [string, string]),
  );

const MapRule = z.strictObject({
  file: z.string().min(1),
  missing: z.enum(["skip", "keep", "fail"]).default("fail"),
});

export const mapSchema = z.strictObject({ location: MapRule.optional(), sku: MapRule.optional() });

export type BodyConfig = {
  format: "csv" | "ndjson" | "json";
  /** A field name, or `{output_name: field}`, as configured (so the printed config loads again). */
  columns: (string | Record<string, string>)[];
  header: boolean;
  delimiter: string;
  template: string | null;
  rows_per_message: number | null;
  max_bytes: number | null;
  multipart?: { field: string; filename: string } | null;
};
export type MapConfig = z.output<typeof mapSchema>;

type SubLike = {
  subjects: readonly string[];
  url: string;
  headers: Record<string, string>;
  body?: BodyConfig;
  map?: MapConfig;
};

const PLACEHOLDER = /\{\{\s*([^}]*?)\s*\}\}/g;

/** The field names `{{…}}` placeholders in a text name. */
export const placeholdersIn = (text: string) => [...text.matchAll(PLACEHOLDER)].map((m) => m[1]!);

const takesStock = (subjects: readonly string[]) =>
  subjects.some((s) => s.startsWith("stock.") || s.startsWith("*"));
const onlyStock = (subjects: readonly string[]) => subjects.every((s) => s.startsWith("stock."));

/**
 * Cross-field rules of one subscription, reported at `subscriptions[i]…`: fields that exist,
 * a template that compiles, placeholders only where their value is known.
 */
export function checkBody(sub: SubLike, ctx: z.RefinementCtx, at: (string | number)[]): void {
  // zod runs cross-field rules even when a field failed: only a body that parsed is checked
  const body = sub.body && Array.isArray(sub.body.columns) ? sub.body : undefined;
  if (!Array.isArray(sub.subjects) || typeof sub.url !== "string") return;
  const stock = takesStock(sub.subjects);
  const perRow = body?.rows_per_message === 1;
  const known: readonly string[] = perRow ? STOCK_FIELDS : MESSAGE_FIELDS;
  const where = (path: (string | number)[], message: string) =>
    ctx.addIssue({ code: "custom", path: [...at, ...path], message });
  const checkPlaceholders = (text: string, path: (string | number)[]) => {
    for (const name of placeholdersIn(text)) {
      if (!stock)
        where(
          path,
          `{{${name}}}: placeholders are for stock subscriptions (fields ${STOCK_FIELDS.join(", ")})`,
        );
      else if (!known.includes(name))
        where(
          path,
          `{{${name}}}: unknown field; expected one of ${known.join(", ")}${perRow ? "" : " (row fields need rows_per_message: 1)"}`,
        );
    }
  };
  if (sub.map && !onlyStock(sub.subjects))
    where(["map"], "code mapping applies to stock: expected only stock.* subjects");
  checkPlaceholders(sub.url, ["url"]);
  for (const [name, value] of Object.entries(sub.headers)) checkPlaceholders(value, ["headers", name]);
  if (!body) return;
  if (stock && !onlyStock(sub.subjects)) {
    where(
      ["body"],
      "a body applies to stock or to order events: give stock.* and other subjects separate subscriptions",
    );
    return;
  }
  if (body.template !== null) {
    try {
      const t = compileTemplate(body.template);
      const fields = stock ? [...STOCK_FIELDS, "rows"] : [];
      const unknown = stock ? [...t.names].filter((n) => !fields.includes(n)) : [];
      if (unknown.length)
        where(
          ["body", "template"],
          `unknown field ${unknown.map((u) => `"${u}"`).join(", ")}; expected one of rows, ${STOCK_FIELDS.join(", ")}`,
        );
    } catch (err) {
      where(["body", "template"], (err as Error).message);
    }
    if (body.format !== "json")
      where(["body", "template"], `a template writes JSON: set format: json (got ${body.format})`);
  }
  if (!stock) {
    if (body.template === null)
      where(
        ["body", "template"],
        `required for order events (fields: the event's own, plus ${EVENT_FIELDS.join(", ")})`,
      );
    return;
  }
  columnPairs(body.columns).forEach(([out, field], i) => {
    if (!STOCK_FIELDS.includes(field))
      where(
        ["body", "columns", i],
        `unknown field "${field}" for "${out}"; expected one of ${STOCK_FIELDS.join(", ")}`,
      );
    else if (LATE_FIELDS.includes(field) && body.format !== "json")
      where(
        ["body", "columns", i],
        `"${field}" is known only when the message is enqueued: use it in a json body, the url or a header`,
      );
  });
}
