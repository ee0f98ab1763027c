/**
 * A JSON-building subset of JSONata compiled to plain functions: literals, fields, object and
 * array constructors, `rows.{…}`, `&`, and $string / $number / $replace with a literal pattern.
 * JSONata's own evaluator handles 40k rows/s over `rows.{…}` (its async steps per node), which
 * would make a 1M-row full through a template 10x slower than the CSV path. A template using
 * anything else keeps JSONata; test/unit/formats-template.test.ts holds both to the same output.
 */
type Fn = (ctx: Record<string, unknown>) => unknown;
type Node = Record<string, unknown> & { type: string; value?: unknown };

/** A compiled template, or null when it uses more than the subset. */
export function compileFast(ast: unknown): ((input: Record<string, unknown>) => unknown) | null {
  try {
    return build(ast as Node);
  } catch (err) {
    if (err instanceof Unsupported) return null;
    throw err;
  }
}

/** Thrown at compile time, or at run time for a value the subset does not convert (JSONata then does). */
export class Unsupported extends Error {}
const no = (): never => {
  throw new Unsupported();
};

// JSONata marks sequences it builds from paths; a singleton sequence becomes its one value
const SEQUENCE = Symbol("sequence");
type Sequence = unknown[] & { [SEQUENCE]?: true };
const sequence = (items: unknown[]): unknown => {
  if (items.length === 0) return undefined;
  if (items.length === 1) return items[0];
  (items as Sequence)[SEQUENCE] = true;
  return items;
};

function build(n: Node): Fn {
  switch (n.type) {
    case "string":
    case "number":
    case "value": {
      const v = n.value;
      return () => v;
    }
    case "path":
      return path(n.steps as Node[]);
    case "unary":
      if (n.value === "{") return object(n.lhs as [Node, Node][]);
      if (n.value === "[") return array(n.expressions as Node[]);
      return no();
    case "binary":
      if (n.value !== "&") return no();
      return concat(build(n.lhs as Node), build(n.rhs as Node));
    case "function":
      return call(n);
    default:
      return no();
  }
}

function path(steps: Node[]): Fn {
  const [first, second, ...rest] = steps;
  if (rest.length || first?.type !== "name" || n(first).predicate || n(first).stages) return no();
  const name = String(first.value);
  // a field holding an array is a sequence in JSONata's terms: left to JSONata
  if (!second) return (ctx) => (Array.isArray(ctx[name]) ? no() : ctx[name]);
  // `rows.{…}`: the constructor per element of an array field
  if (second.type !== "unary" || second.value !== "{" || n(second).predicate || n(second).stages) return no();
  const each = object(second.lhs as [Node, Node][]);
  return (ctx) => {
    const v = ctx[name];
    if (v === undefined) return undefined;
    const list = Array.isArray(v) ? v : [v];
    return sequence(list.map((item) => each(item as Record<string, unknown>)));
  };
}

const n = (node: Node) => node as { predicate?: unknown; stages?: unknown; group?: unknown };

function object(pairs: [Node, Node][]): Fn {
  const compiled = pairs.map(([k, v]) => {
    if (k.type !== "string") return no();
    return [String(k.value), build(v)] as const;
  });
  return (ctx) => {
    const o: Record<string, unknown> = {};
    for (const [k, f] of compiled) {
      const v = f(ctx);
      if (v !== undefined) o[k] = v;
    }
    return o;
  };
}

function array(items: Node[]): Fn {
  const compiled = items.map((i) => ({ f: build(i), flatten: i.type === "path" }));
  return (ctx) => {
    const out: unknown[] = [];
    for (const { f, flatten } of compiled) {
      const v = f(ctx);
      if (v === undefined) continue;
      if (flatten && Array.isArray(v)) out.push(...v);
      else out.push(v);
    }
    return out;
  };
}

/** JSONata's $string of a scalar (objects and arrays are not in the subset's inputs). */
function asString(v: unknown): string {
  if (v === undefined) return "";
  if (typeof v === "string") return v;
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : no();
  if (typeof v === "boolean") return String(v);
  return no();
}

function concat(a: Fn, b: Fn): Fn {
  return (ctx) => asString(a(ctx)) + asString(b(ctx));
}

function call(node: Node): Fn {
  const proc = node.procedure as Node;
  const args = node.arguments as Node[];
  const name = proc?.type === "variable" ? proc.value : null;
  if (name === "string" && args.length === 1) {
    const f = build(args[0]!);
    return (ctx) => {
      const v = f(ctx);
      return v === undefined ? undefined : asString(v);
    };
  }
  if (name === "replace" && args.length === 3) return replace(args);
  return no();
}

function replace([str, pattern, by]: Node[]): Fn {
  // a literal replacement without "$" (JSONata and JS read "$1" alike, but not every "$" form)
  if (by!.type !== "string" || String(by!.value).includes("$")) return no();
  const replacement = String(by!.value);
  const subject = build(str!);
  let re: RegExp;
  if (pattern!.type === "regex" && pattern!.value instanceof RegExp) {
    const src = pattern!.value;
    re = new RegExp(src.source, `${src.flags.replace("g", "")}g`);
  } else if (pattern!.type === "string") {
    re = new RegExp(String(pattern!.value).replace(/[.*+?^${}()|[\]\\]/g, "\\$&"), "g");
  } else return no();
  return (ctx) => {
    const s = subject(ctx);
    if (s === undefined) return undefined;
    if (typeof s !== "string") return no();
    return s.replace(re, replacement);
  };
}
