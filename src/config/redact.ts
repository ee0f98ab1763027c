/**
 * Secret-free views of the config and of log text, for `config check`, `/api/status` and logs.
 */
import type { Config } from "./schema.ts";

const REDACTED = "[redacted]";
const SECRET_HEADER = /auth|token|key|secret|cookie|password|signature|session/i;

// Userinfo cannot hold an unescaped "/", so the password runs to the last "@" before one; greedy on
// purpose, so a password with a stray "@" in it is masked whole rather than cut at its first "@".
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s/]*@/gi;
// A user name alone can be the secret (https://TOKEN@host): the whole userinfo goes.
const URL_USERINFO = /(\b[a-z][a-z0-9+.-]*:\/\/)[^\s:/@[\]]+@/gi;
// Chat webhooks (Slack, Discord, Teams) carry their token in the path: a long opaque path
// segment is masked wherever it appears in a URL.
const URL_TEXT = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>]+/gi;
const PATH_TOKEN = /(?<=\/)[A-Za-z0-9_~.@%+=-]{20,}(?=\/|$)/g;
const WHSEC_TOKEN = /\bwhsec_[A-Za-z0-9+/=]+/g;
// Query parameters and libpq keyword strings ("host=db password=…") carry secrets too.
const SECRET_PARAM =
  /\b([\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|key|code|auth|signature|sig|credential)=)[^&\s#"']+/gi;
const BEARER = /\b(Bearer\s+)[^\s"',;]+/gi;
const BASIC = /\b(Basic\s+)[A-Za-z0-9+/=]+/gi;
// "x-api-auth: abc", "X-Api-Key: abc" in a header dump; Bearer/Basic values are masked above.
// Header names have a hyphen ("admin_token: expected …" in a config message is not a header).
const SECRET_HEADER_LINE =
  /\b((?:x-[\w-]*|[\w-]*-)(?:auth|token|key|secret|password|cookie|session)[\w-]*:[ \t]*)(?!Bearer\b|Basic\b|\[redacted\])[^\s,;"']+/gi;
// password "a b", password='x', "password":"x": the quoted value, quotes kept.
const QUOTED_SECRET =
  /\b([\w-]*(?:password|passwd|pwd|secret|token)["']?\s*[:=]?\s*)(["'])(?:(?!\2)[^\n])*\2/gi;

/**
 * Masks URL passwords, `whsec_…` secrets, bearer tokens and secret-looking query parameters in any
 * text; applied to every string of a redacted config and to log lines.
 * @example redactString("postgres://app:hunter2@db/stock") // "postgres://app:[redacted]@db/stock"
 */
export function redactString(s: string): string {
  return s
    .replace(URL_PASSWORD, `$1${REDACTED}@`)
    .replace(URL_USERINFO, (m, scheme: string) => (m.endsWith(`${REDACTED}@`) ? m : `${scheme}${REDACTED}@`))
    .replace(URL_TEXT, maskPathTokens)
    .replace(WHSEC_TOKEN, `whsec_${REDACTED}`)
    .replace(QUOTED_SECRET, `$1$2${REDACTED}$2`)
    .replace(SECRET_PARAM, `$1${REDACTED}`)
    .replace(BEARER, `$1${REDACTED}`)
    .replace(BASIC, `$1${REDACTED}`)
    .replace(SECRET_HEADER_LINE, `$1${REDACTED}`);
}

/** Long opaque path segments of one URL (before its query) become "[redacted]". */
function maskPathTokens(url: string): string {
  const authority = url.indexOf("//") + 2;
  const pathStart = url.indexOf("/", authority);
  if (pathStart < 0) return url;
  const end = url.slice(pathStart).search(/[?#]/);
  const pathEnd = end < 0 ? url.length : pathStart + end;
  const path = url.slice(pathStart, pathEnd).replace(PATH_TOKEN, REDACTED);
  return url.slice(0, pathStart) + path + url.slice(pathEnd);
}

/**
 * A destination as it may be printed: the origin of an http(s) URL and nothing of its path,
 * query or user (a chat webhook's token is its path); file:// and mailto: as written.
 * @example originOnly("https://hooks.slack.com/services/T0/B0/XyZ") // "https://hooks.slack.com/…"
 */
export function originOnly(url: string): string {
  if (!/^https?:\/\//i.test(url) || !URL.canParse(url)) return redactString(url);
  const u = new URL(url);
  const rest = u.pathname !== "/" || u.search !== "" || u.hash !== "";
  return `${u.origin}${rest ? "/…" : ""}`;
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
    if (value !== "" && isSecretField(key, parentKey)) return REDACTED;
    // where messages and notifications go: every such URL may be a credential in itself
    return isDestination(key, parentKey) ? originOnly(value) : redactString(value);
  }
  // array items keep their list's key, so each entry of `secrets` counts as a secret
  if (Array.isArray(value)) return value.map((item) => redactNode(item, key, parentKey));
  if (value !== null && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactNode(v, k, key)]));
  }
  return value;
}

const isDestination = (key: string, parentKey: string) =>
  (key === "url" && parentKey === "subscriptions") ||
  /^on_(?:failure|deactivation|failure_recovered)$/.test(key);

const isSecretField = (key: string, parentKey: string) =>
  key === "admin_token" ||
  key === "secrets" ||
  (parentKey === "headers" && SECRET_HEADER.test(key)) ||
  (parentKey === "sftp" && SFTP_SECRETS.has(key));

// the sftp: block's credentials (a key file's path and the host key fingerprint are not secret)
const SFTP_SECRETS = new Set(["private_key", "passphrase", "password"]);
