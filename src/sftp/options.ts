/**
 * The `sftp:` block of a subscription and its `sftp://user@host:port/dir` URL (issue 13): the
 * schema the config validates with, and the pure checks that tie the two together. Credentials
 * live in the block, never in the URL, so the URL can be shown in status and logs.
 */
import { z } from "zod";

const FINGERPRINT = /^SHA256:[A-Za-z0-9+/]{43}=?$/;

// A single fingerprint or several: during a host key rotation both the old and the new one pass.
const hostKeys = z.preprocess(
  (v) => (typeof v === "string" ? (v === "" ? [] : [v]) : v),
  z.array(
    z
      .string()
      .trim()
      .regex(FINGERPRINT, 'expected a fingerprint like "SHA256:…" (ssh-keyscan HOST | ssh-keygen -lf -)'),
  ),
);

// "" is how "${SFTP_KEY:-}" reads when the variable is unset: the same as leaving it out.
const optionalText = z.preprocess((v) => (v === "" || v === null ? undefined : v), z.string().optional());

const toBoolean = (v: unknown) => (v === "true" ? true : v === "false" ? false : v);

export const SftpBlock = z.strictObject({
  /** The client's private key (OpenSSH or PEM text, e.g. "${SFTP_KEY}"). */
  private_key: optionalText,
  /** Or a file holding it. */
  private_key_file: optionalText,
  passphrase: optionalText,
  password: optionalText,
  /** The server's host key fingerprint(s) as `ssh-keygen -lf` prints them. */
  host_key: hostKeys.default([]),
  /** Or an OpenSSH known_hosts file to check the host key against. */
  known_hosts: optionalText,
  /** The temporary name is `<temp_prefix><name><temp_suffix>`: pollers skip dotfiles and *.tmp. */
  temp_prefix: z
    .string()
    .regex(/^[^/]*$/, 'expected no "/"')
    .default("."),
  temp_suffix: z
    .string()
    .regex(/^[^/]*$/, 'expected no "/"')
    .default(".tmp"),
  /** An empty file `<name><marker>` written after the data file (".done"), for importers that wait for one. */
  marker: z
    .string()
    .regex(/^[^/]+$/, 'expected a suffix like ".done"')
    .nullable()
    .default(null),
  /** Create the remote directory (and its parents) when it does not exist. */
  mkdir: z.preprocess(toBoolean, z.boolean()).default(false),
});

export type SftpOptions = z.output<typeof SftpBlock>;

export type SftpUrl = { username: string; host: string; port: number; dir: string };

/**
 * The parts of an `sftp://` URL, or null when it is not one we accept: a user, a host, an
 * optional port and an absolute directory; no password (credentials go in the `sftp:` block).
 * @example parseSftpUrl("sftp://stock@files.example.com:2222/in/stock")
 *   // { username: "stock", host: "files.example.com", port: 2222, dir: "/in/stock" }
 */
export function parseSftpUrl(url: string): SftpUrl | null {
  if (!/^sftp:\/\/[^\s/]/i.test(url) || !URL.canParse(url)) return null;
  const u = new URL(url);
  if (!u.username || u.password || !u.hostname || u.search || u.hash) return null;
  const dir = decodeURIComponent(u.pathname);
  if (!dir.startsWith("/")) return null;
  const host = u.hostname.startsWith("[") ? u.hostname.slice(1, -1) : u.hostname;
  return { username: decodeURIComponent(u.username), host, port: u.port ? Number(u.port) : 22, dir };
}

export const isSftpUrl = (url: string) => url.toLowerCase().startsWith("sftp://");

type Issue = { path: PropertyKey[]; message: string };

/**
 * The rules between a subscription's URL and its `sftp:` block, as issues relative to the
 * subscription: an sftp:// URL needs a way to authenticate and a pinned host key (a host key
 * accepted unseen would send stock files to whoever answers); other URLs take no block.
 */
export function sftpIssues(url: string, block: SftpOptions | undefined): Issue[] {
  if (!isSftpUrl(url)) {
    return block ? [{ path: ["sftp"], message: "only for sftp:// URLs" }] : [];
  }
  if (/^sftp:\/\/[^/@]*:[^/@]*@/i.test(url))
    return [{ path: ["url"], message: "expected no password in the URL: put it in sftp.password" }];
  if (!parseSftpUrl(url))
    return [
      { path: ["url"], message: "expected sftp:// then user@host, an optional :port and an absolute /dir" },
    ];
  if (!block)
    return [{ path: ["sftp"], message: "required for sftp:// URLs (host_key and a key or password)" }];
  const issues: Issue[] = [];
  if (block.host_key.length === 0 && !block.known_hosts)
    issues.push({
      path: ["sftp", "host_key"],
      message: 'required (or sftp.known_hosts): the server\'s key fingerprint "SHA256:…"',
    });
  if (block.private_key && block.private_key_file)
    issues.push({
      path: ["sftp", "private_key_file"],
      message: "expected private_key or private_key_file, not both",
    });
  if (!block.private_key && !block.private_key_file && !block.password)
    issues.push({ path: ["sftp"], message: "expected private_key, private_key_file or password" });
  if (block.temp_prefix === "" && block.temp_suffix === "")
    issues.push({
      path: ["sftp", "temp_suffix"],
      message: "expected a temp_prefix or temp_suffix (the temporary name must differ)",
    });
  return issues;
}
