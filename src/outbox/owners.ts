import { createHash, randomBytes } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import { hostname } from "node:os";

/**
 * Where a pid means one process: this boot of this host, in this PID namespace. Two containers
 * with host networking share a host name but not a PID namespace, so a pid seen from one says
 * nothing about a process of the other: comparing pids across them stole live leases.
 */
function pidScope(): string {
  const parts: string[] = [];
  try {
    parts.push(readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim());
    parts.push(String(statSync("/proc/self/ns/pid").ino));
  } catch {
    // No /proc (not Linux): no scope, so no pid is ever judged dead; leases then just expire.
    return "";
  }
  return createHash("sha256").update(parts.join("/")).digest("hex").slice(0, 12);
}

const SCOPE = pidScope();

/** `host:pid:nonce:scope`: unique per process; the scope says where its pid can be checked. */
export function newOwnerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString("hex")}:${SCOPE}`;
}

/**
 * Whether `owner` is a process that no longer runs, as far as this process can tell: only for
 * an owner of the same host and PID namespace (same scope), whose pid is gone. Anything else is
 * let expire on the database's clock.
 */
export function isDeadLocalOwner(owner: string, self: string, scope = SCOPE): boolean {
  const [host, pid, , ownerScope] = owner.split(":");
  if (!scope || ownerScope !== scope || host !== hostname() || !pid || owner === self) return false;
  if (Number(pid) === process.pid) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/** The subscriptions one of `live` processes should send for: all of them shared out, rounded up. */
export function fairShare(subscriptions: number, live: number): number {
  return Math.ceil(subscriptions / Math.max(1, live));
}
