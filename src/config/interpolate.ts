/**
 * `${VAR}` and `${VAR:-default}` in config strings, resolved against an environment passed in
 * (never `process.env` directly, so tests and `config check` see exactly what they pass).
 */
import { ConnectorError } from "../errors.ts";

export type Env = Readonly<Record<string, string | undefined>>;

// One pass over three forms: "$${" (an escaped literal), a well-formed reference, and any other
// "${" — the last is caught so a typo like "${DB URL}" fails loudly instead of reaching the DB.
const REFERENCE = /\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{/g;

/**
 * A copy of `value` with every reference in its strings replaced; keys are left alone.
 * Like the shell, `${VAR:-default}` uses the default when VAR is unset or empty.
 * @throws ConnectorError CONFIG_INVALID naming the config path of every unset or malformed reference
 * @example interpolate({ db: { url: "${DATABASE_URL:-}" } }, {}) // { db: { url: "" } }
 */
export function interpolate(value: unknown, env: Env, path = ""): unknown {
  const problems: string[] = [];
  const result = walk(value, env, path, problems);
  if (problems.length > 0) throw new ConnectorError("CONFIG_INVALID", problems.join("; "));
  return result;
}

/** Extends a config path the way messages print it: `a.b`, `a[0]`, `a[0].b`. */
export function joinPath(parent: string, key: string | number): string {
  if (typeof key === "number") return `${parent}[${key}]`;
  return parent === "" ? key : `${parent}.${key}`;
}

/** A path for the start of a message; the document itself has the empty path. */
export const pathLabel = (path: string): string => (path === "" ? "(root)" : path);

function walk(value: unknown, env: Env, path: string, problems: string[]): unknown {
  if (typeof value === "string") return substitute(value, env, path, problems);
  if (Array.isArray(value)) return value.map((item, i) => walk(item, env, joinPath(path, i), problems));
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).map(([k, v]) => [k, walk(v, env, joinPath(path, k), problems)]);
    return Object.fromEntries(entries);
  }
  return value;
}

function substitute(text: string, env: Env, path: string, problems: string[]): string {
  return text.replace(REFERENCE, (match, name: string | undefined, fallback: string | undefined) => {
    if (match === "$${") return "${";
    if (name === undefined) {
      problems.push(
        `${pathLabel(path)}: malformed "\${" (write \${VAR}, \${VAR:-default}, or $\${ for a literal "\${")`,
      );
      return match;
    }
    const found = env[name];
    if (found !== undefined && (found !== "" || fallback === undefined)) return found;
    if (fallback !== undefined) return fallback;
    problems.push(
      `${pathLabel(path)}: environment variable ${name} is not set (use \${${name}:-} to allow empty)`,
    );
    return match;
  });
}
