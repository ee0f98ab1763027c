/**
 * What an SFTP attempt's error was, as the error classes attempts, status and notifications
 * show (issue 13). Pure: the I/O side tags its errors (`sftpFault`) where only it knows what
 * happened (a rejected host key, a full disk seen through statvfs), and this reads the tags, ssh2's
 * `level`, SFTP status codes and socket codes.
 */
import { classifyError, type ErrorClass } from "../outbox/retry.js";

/** SFTP status codes (draft-ietf-secsh-filexfer): 2..3 in v3, which OpenSSH speaks; 14, 15 in v5+. */
const SFTP_STATUS = {
  NO_SUCH_FILE: 2,
  PERMISSION_DENIED: 3,
  NO_SPACE_ON_FILESYSTEM: 14,
  QUOTA_EXCEEDED: 15,
} as const;

export type SftpFault = "host_key_mismatch" | "disk_full" | "timeout" | "no_such_directory";

/** An error the SFTP side raises itself, tagged with what it knows. */
export function sftpFault(fault: SftpFault, message: string, cause?: unknown): Error {
  return Object.assign(new Error(message, { cause }), { sftpFault: fault });
}

// OpenSSH's sftp-server maps ENOSPC and EDQUOT to a bare "Failure"; other servers say it in words.
const DISK_FULL_TEXT = /no space left|disk full|quota exceeded|insufficient (?:disk )?space/i;

/**
 * The class of an SFTP attempt's error, looking through `cause`; unknown SFTP failures are "sftp".
 * @example classifySftpError(Object.assign(new Error("Permission denied"), { code: 3 })).errorClass
 *   // "permission_denied"
 */
export function classifySftpError(err: unknown): { errorClass: ErrorClass; message: string } {
  const base = classifyError(err);
  for (const e of chain(err)) {
    const own = classOf(e);
    if (own) return { errorClass: own, message: base.message };
  }
  if (base.errorClass === "connect" || base.errorClass === "network" || base.errorClass === "timeout")
    return base;
  return { errorClass: base.errorClass === "other" ? "sftp" : base.errorClass, message: base.message };
}

function classOf(e: Record<string, unknown>): ErrorClass | undefined {
  if (typeof e.sftpFault === "string") return e.sftpFault as SftpFault;
  // ssh2 tags the phase a connection error happened in
  if (e.level === "client-authentication") return "auth_failed";
  if (e.level === "client-timeout") return "timeout";
  if (e.code === "ECONNREFUSED") return "connection_refused";
  if (typeof e.message === "string" && CONNECTION_LOST.test(e.message)) return "network";
  // an SSH disconnect also has a numeric code: only the replies to our SFTP requests are read so
  if (typeof e.sftpOp !== "string") return undefined;
  if (e.code === SFTP_STATUS.PERMISSION_DENIED) return "permission_denied";
  if (e.code === SFTP_STATUS.NO_SUCH_FILE) return "no_such_directory";
  if (e.code === SFTP_STATUS.NO_SPACE_ON_FILESYSTEM || e.code === SFTP_STATUS.QUOTA_EXCEEDED)
    return "disk_full";
  if (typeof e.message === "string" && DISK_FULL_TEXT.test(e.message)) return "disk_full";
  return undefined;
}

/**
 * Marks an error as the server's reply to one SFTP request (`open`, `write`, `rename`…): only a
 * status with a numeric code is one; ssh2 fails pending requests with plain errors when the
 * connection goes ("No response from server"), and those mean the connection, not the server.
 */
export function sftpReply(err: Error, op: string): Error {
  return typeof (err as { code?: unknown }).code === "number" ? Object.assign(err, { sftpOp: op }) : err;
}

// What ssh2 says when the connection under a request went away.
const CONNECTION_LOST = /^(?:No response from server|Channel not open|Not connected|No SFTP)/i;

/** True for an SFTP status reply (the server answered): the connection itself is fine. */
export function isStatusReply(err: unknown): boolean {
  return chain(err).some((e) => typeof e.sftpOp === "string" || typeof e.sftpFault === "string");
}

function chain(err: unknown): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  let e: unknown = err;
  while (
    e !== null &&
    typeof e === "object" &&
    out.length < 10 &&
    !out.includes(e as Record<string, unknown>)
  ) {
    out.push(e as Record<string, unknown>);
    e = (e as { cause?: unknown }).cause;
  }
  return out;
}

/**
 * Whether a write that failed with a bare SFTP failure failed for want of space: fewer free bytes
 * than the file still needed (statvfs@openssh.com's `bavail × frsize`).
 */
export function looksFull(fs: { bavail: number; frsize: number } | null, bytesNeeded: number): boolean {
  if (!fs) return false;
  return fs.bavail * fs.frsize < Math.max(bytesNeeded, 1);
}
