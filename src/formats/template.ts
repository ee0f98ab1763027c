import jsonata from "jsonata";
import { compileFast, Unsupported } from "./fast-template.ts";

/**
 * JSONata templates (the `jsonata` package): compiled once at config time, evaluated per message.
 * Pure apart from JSONata's own promise-based evaluation.
 */
export type Template = {
  text: string;
  expr: jsonata.Expression;
  names: ReadonlySet<string>;
  /** The same template as plain functions, when it stays within fast-template.ts's subset. */
  fast: ((input: Record<string, unknown>) => unknown) | null;
};

/** Compiles a template; a syntax error becomes one line with its position (`at 12: Expected ":"`). */
export function compileTemplate(text: string): Template {
  let expr: jsonata.Expression;
  try {
    expr = jsonata(text);
  } catch (err) {
    const e = err as { message?: string; position?: number; code?: string };
    throw new Error(`JSONata syntax error at character ${e.position ?? "?"}: ${e.message ?? String(err)}`);
  }
  return { text, expr, names: namesIn(expr.ast()), fast: compileFast(expr.ast()) };
}

/**
 * Every field name the expression reads (path steps such as `rows`, `sku`). Context is not
 * tracked: a stock template may only name known fields anywhere, which is what lets a typo
 * (`quantiy`) fail at config check instead of sending nulls to the OMS.
 */
export function namesIn(ast: unknown): Set<string> {
  const names = new Set<string>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const n of node) visit(n);
      return;
    }
    if (!node || typeof node !== "object") return;
    const n = node as Record<string, unknown>;
    if (n.type === "name" && typeof n.value === "string") names.add(n.value);
    for (const [key, child] of Object.entries(n))
      if (key !== "value" || typeof child === "object") visit(child);
  };
  visit(ast);
  return names;
}

/** The template's result as JSON text; `undefined` (nothing matched) is refused rather than sent empty. */
export async function evaluateTemplate(t: Template, input: Record<string, unknown>): Promise<string> {
  let out: unknown;
  try {
    out = t.fast ? fastOr(t, input) : await t.expr.evaluate(input);
    if (out === RETRY) out = await t.expr.evaluate(input);
  } catch (err) {
    const e = err as { message?: string; position?: number; token?: unknown };
    const near = typeof e.token === "string" && e.token ? ` (${e.token})` : "";
    throw new TemplateError(`at character ${e.position ?? "?"}${near}: ${e.message ?? String(err)}`);
  }
  if (out === undefined) throw new TemplateError("produced nothing (undefined)");
  return JSON.stringify(out);
}

/** The template could not render this input (bad data for it): `where` is position and reason. */
export class TemplateError extends Error {
  constructor(readonly where: string) {
    super(`template failed ${where}`);
  }
}

const RETRY = Symbol("jsonata");

function fastOr(t: Template, input: Record<string, unknown>): unknown {
  try {
    return t.fast!(input);
  } catch (err) {
    if (err instanceof Unsupported) return RETRY;
    throw err;
  }
}
