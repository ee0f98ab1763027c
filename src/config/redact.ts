/**
 * Secret-free views of the config and of log text, for `config check`, `/api/status` and logs.
 */
import type { Config } from "./schema.ts";

const REDACTED = "[redacted]";
const SECRET_HEADER = /authorization|token|key|secret|cookie/i;

// Userinfo cannot hold an unescaped "/", so the password runs to the last "@" before one; greedy on
// purpose, so a password with a stray "@" in it is masked whole rather than cut at its first "@".
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s/]*@/gi;
const WHSEC_TOKEN = /\bwhsec_[A-Za-z0-9+/=]+/g;
// Query parameters and libpq keyword strings ("host=db password=…") carry secrets too.
const SECRET_PARAM = /\b([\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|signature|sig)=)[^&\s#"']+/gi;
const BEARER = /\b(Bearer\s+)[^\s"',;]+/gi;

/**
 * Masks URL passwords, `whsec_…` secrets, bearer tokens and secret-looking query parameters in any
 * text; applied to every string of a redacted config and to log lines.
 * @example redactString("postgres://app:hunter2@db/stock") // "postgres://app:[redacted]@db/stock"
 */
export function redactString(s: string): string {
  return s
    .replace(URL_PASSWORD, `$1${REDACTED}@`)
    .replace(WHSEC_TOKEN, `whsec_${REDACTED}`)
    .replace(SECRET_PARAM, `$1${REDACTED}`)
    .replace(BEARER, `$1${REDACTED}`);
}

/**
 * A deep copy of `config` safe to print: `admin_token`, every `secrets` entry and secret-looking
 * header values become "[redacted]"; every other string goes through `redactString`.
 */
export function redactConfig(config: Config): unknown {
  return redactNode(config, "", "");
}

function redactNode(value: unknown, key: string, parentKey: string): unknown {
  if (typeof value === "string") {
    return value !== "" && isSecretField(key, parentKey) ? REDACTED : redactString(value);
  }
  // array items keep their list's key, so each entry of `secrets` counts as a secret
  if (Array.isArray(value)) return value.map((item) => redactNode(item, key, parentKey));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactNode(v, k, key)]));
  }
  return value;
}

const isSecretField = (key: string, parentKey: string) =>
  key === "admin_token" || key === "secrets" || (parentKey === "headers" && SECRET_HEADER.test(key));
