/**
 * The job's requests as templates (pure apart from JSONata's promises): `{{expression}}` parts
 * of a url or header value, and a step's `body`, all JSONata (the language of `body.template`)
 * over `{message, body, open, send, close, response}`.
 */
import { compileTemplate, type Template } from "../formats/template.ts";

const EXPR = /\{\{([\s\S]*?)\}\}/g;
const cache = new Map<string, Template>();

/** Compiled once per expression text (config check already proved each compiles). */
function compiled(text: string): Template {
  let t = cache.get(text);
  if (!t) {
    t = compileTemplate(text);
    cache.set(text, t);
  }
  return t;
}

/**
 * A job template that cannot be evaluated for this message (an answer without the field it reads,
 * a body that gives nothing): the attempt's failure, recorded and retried like any, never a reason
 * to start the job again at once (run.ts).
 */
export class JobTemplateError extends Error {}

export async function evaluate(text: string, input: Record<string, unknown>): Promise<unknown> {
  try {
    return await compiled(text).expr.evaluate(input);
  } catch (err) {
    const e = err as { message?: string; position?: number };
    throw new JobTemplateError(
      `${JSON.stringify(text)} failed at character ${e.position ?? "?"}: ${e.message ?? String(err)}`,
    );
  }
}

/** A url (values URL-encoded) or header value with its `{{…}}` parts filled; nothing there = "". */
export async function fill(text: string, input: Record<string, unknown>, encode: boolean): Promise<string> {
  if (!text.includes("{{")) return text;
  const parts: string[] = [];
  let last = 0;
  for (const m of text.matchAll(EXPR)) {
    const v = await evaluate(m[1]!.trim(), input);
    const s = v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v);
    parts.push(text.slice(last, m.index), encode ? encodeURIComponent(s) : s);
    last = m.index! + m[0].length;
  }
  parts.push(text.slice(last));
  return parts.join("");
}

/** A step's body as JSON text; an expression that gives nothing is an error, not an empty body. */
export async function renderBody(text: string, input: Record<string, unknown>): Promise<string> {
  const v = await evaluate(text, input);
  if (v === undefined)
    throw new JobTemplateError(`${JSON.stringify(text)} produced nothing for this message`);
  return JSON.stringify(v);
}

/** A reply body as JSON (null when empty or not JSON: templates then see null). */
export function parseJson(text: string | null): unknown {
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
