/**
 * Host key pinning: the server's key must match a configured fingerprint or a known_hosts entry,
 * else the connection is refused before any credential is sent (pure functions; the connection
 * calls them from ssh2's hostVerifier).
 */
import { createHash, createHmac } from "node:crypto";

/**
 * The fingerprint `ssh-keygen -lf` prints for a key blob (the key in SSH wire format).
 * @example fingerprint(blob) // "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s"
 */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash("sha256").update(keyBlob).digest("base64").replace(/=+$/, "")}`;
}

/** Whether the key's fingerprint is one of the pinned ones (trailing "=" or not). */
export function pinnedAccepts(pins: readonly string[], keyBlob: Buffer): boolean {
  const got = fingerprint(keyBlob);
  return pins.some((p) => p.trim().replace(/=+$/, "") === got);
}

/**
 * Whether an OpenSSH known_hosts text accepts this key for host:port: a line naming the host
 * (plain, `[host]:port`, a comma list, `*`/`?` patterns or hashed `|1|salt|hash`) with the same key
 * blob. A `@revoked` line for the key refuses it; `@cert-authority` lines are not supported and
 * accept nothing.
 */
export function knownHostsAccepts(text: string, host: string, port: number, keyBlob: Buffer): boolean {
  const name = port === 22 ? host : `[${host}]:${port}`;
  const blob = keyBlob.toString("base64");
  let accepted = false;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    const marker = fields[0]!.startsWith("@") ? fields.shift() : undefined;
    const [hosts = "", , key = ""] = fields;
    if (key !== blob || !hostsMatch(hosts, name)) continue;
    if (marker === "@revoked") return false;
    if (marker === undefined) accepted = true;
  }
  return accepted;
}

function hostsMatch(hosts: string, name: string): boolean {
  if (hosts.startsWith("|1|")) {
    const [, , salt = "", hash = ""] = hosts.split("|");
    const mac = createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64");
    return mac === hash;
  }
  let match = false;
  for (const pattern of hosts.split(",")) {
    const negated = pattern.startsWith("!");
    if (!globMatch(negated ? pattern.slice(1) : pattern, name)) continue;
    if (negated) return false;
    match = true;
  }
  return match;
}

function globMatch(pattern: string, name: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${re}$`, "i").test(name);
}
