/**
 * YAML text + environment -> a validated, frozen Config. The caller reads the file and passes
 * `process.env`; this module does no I/O.
 */
import { parse, YAMLParseError } from "yaml";
import type { z } from "zod";
import { ConnectorError } from "../errors.ts";
import { type Env, interpolate, joinPath, pathLabel } from "./interpolate.ts";
import { redactString } from "./redact.ts";
import { type Config, ConfigSchema, configWarnings } from "./schema.ts";

export type LoadedConfig = {
  /** Deeply frozen: modules share it, so none may change what another reads. */
  config: Config;
  /** Legal but doubtful settings, one sentence each, for the caller to log. */
  warnings: string[];
};

/**
 * @throws ConnectorError CONFIG_INVALID with one `path: expected …` clause per problem, joined by "; "
 * @example loadConfig("log: { level: debug }", process.env).config.server.port // 8080
 */
export function loadConfig(yamlText: string, env: Env): LoadedConfig {
  // an empty file (or one with only comments) is a valid config: all defaults
  const raw = interpolate(parseYaml(yamlText) ?? {}, env);
  const parsed = ConfigSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) throw new ConnectorError("CONFIG_INVALID", describeIssues(parsed.error.issues));
  return { config: deepFreeze(parsed.data), warnings: configWarnings(parsed.data) };
}

function parseYaml(text: string): unknown {
  try {
    return parse(text);
  } catch (err) {
    if (!(err instanceof YAMLParseError)) throw err;
    const pos = err.linePos?.[0];
    const where = pos ? ` at line ${pos.line}, column ${pos.col}` : "";
    // yaml appends the position and a source excerpt; keep one line, and no config text in it
    const reason = err.message.split(/ at line \d+|\n/)[0];
    throw new ConnectorError("CONFIG_INVALID", `YAML syntax error${where}: ${reason}`, { cause: err });
  }
}

// ---------------------------------------------------------------- messages

type Issue = z.core.$ZodIssue;

function describeIssues(issues: readonly Issue[]): string {
  return issues.flatMap(describeIssue).map(redactString).join("; ");
}

function describeIssue(iss: Issue): string[] {
  const path = iss.path.reduce<string>((p, k) => joinPath(p, typeof k === "number" ? k : String(k)), "");
  if (iss.code === "unrecognized_keys") {
    const known = knownKeysAt(ConfigSchema, iss.path);
    return iss.keys.map((key) => `${joinPath(path, key)}: unknown key${suggestion(key, known)}`);
  }
  return [`${pathLabel(path)}: ${issueText(iss, path)}`];
}

const NOUNS: Readonly<Record<string, string>> = {
  string: "a string",
  number: "a number",
  int: "an integer",
  boolean: "true or false",
  array: "a list",
  object: "a mapping",
  record: "a mapping",
  null: "null",
};

function issueText(iss: Issue, path: string): string {
  switch (iss.code) {
    case "invalid_type": {
      // schemas may name what they expect more precisely than zod's base type ("an integer")
      const expected = iss.message.startsWith("expected ")
        ? iss.message
        : `expected ${NOUNS[iss.expected] ?? iss.expected}`;
      return `${expected}, got ${shown(iss.input, path)}`;
    }
    case "invalid_value":
      return `expected one of ${iss.values.map((v) => JSON.stringify(v)).join(", ")}, got ${shown(iss.input, path)}`;
    case "too_small":
    case "too_big":
      return boundText(iss, path);
    case "invalid_key": // a record key (header name): the key schema's own message says what is wrong
      return iss.issues[0]?.message ?? iss.message;
    default:
      return iss.message;
  }
}

function boundText(iss: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig, path: string): string {
  const small = iss.code === "too_small";
  const limit = Number(small ? iss.minimum : iss.maximum);
  if (iss.origin === "string") return small && limit === 1 ? "expected a non-empty string" : iss.message;
  if (iss.origin === "array")
    return `expected ${small ? "at least" : "at most"} ${limit} item${limit === 1 ? "" : "s"}`;
  const bound = small ? (iss.inclusive ? "at least" : "more than") : iss.inclusive ? "at most" : "less than";
  return `expected ${bound} ${limit}, got ${shown(iss.input, path)}`;
}

// Values under these names may be secrets; say what kind of value it was instead.
const SENSITIVE_PATH = /secret|token|password|header|url/i;
const MAX_SHOWN = 60;

function shown(v: unknown, path: string): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a mapping";
  if (SENSITIVE_PATH.test(path)) return `a ${typeof v}`;
  if (typeof v !== "string") return String(v);
  return JSON.stringify(v.length > MAX_SHOWN ? `${v.slice(0, MAX_SHOWN)}…` : v);
}

// ---------------------------------------------------------------- "did you mean"

type SchemaNode = { _zod: { def: SchemaDef } };
type SchemaDef = {
  type: string;
  innerType?: SchemaNode;
  in?: SchemaNode;
  out?: SchemaNode;
  shape?: Record<string, SchemaNode>;
  element?: SchemaNode;
  valueType?: SchemaNode;
};

/** The keys the schema allows in the object at `path`, looking through defaults and pipes. */
function knownKeysAt(schema: SchemaNode, path: readonly PropertyKey[]): string[] {
  const def = schema._zod.def;
  // preprocess is pipe(transform, schema) and .transform() is pipe(schema, transform)
  const wrapped =
    def.type === "pipe" ? (def.in?._zod.def.type === "transform" ? def.out : def.in) : def.innerType;
  if (wrapped) return knownKeysAt(wrapped, path);
  if (path.length === 0) return def.shape ? Object.keys(def.shape) : [];
  const [key, ...rest] = path;
  const child = def.type === "object" ? def.shape?.[String(key)] : (def.element ?? def.valueType);
  return child ? knownKeysAt(child, rest) : [];
}

const MAX_SUGGESTION_DISTANCE = 2;

function suggestion(key: string, known: readonly string[]): string {
  let best: string | undefined;
  let bestDistance = MAX_SUGGESTION_DISTANCE + 1;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate);
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best === undefined ? "" : ` (did you mean "${best}"?)`;
}

/** Levenshtein distance, two rows at a time. */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length]!;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
