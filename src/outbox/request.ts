import { createHash } from "node:crypto";
import { resolveTarget } from "../formats/placeholders.js";
import { signatureHeaders } from "../subscriptions/signing.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import type { DeliveryRow } from "./queries.js";
import type { SftpTarget } from "../sftp/sender.js";
import type { OutboundRequest } from "./send.js";

const USER_AGENT = "stock-sync/0.1";

/** The exact request one attempt sends (SPEC §5); signed with this attempt's timestamp. */
export function buildRequest(sub: Subscription, row: DeliveryRow, now: Date): OutboundRequest {
  // a view of the row's bytes, not a copy: a stock part is a megabyte, and nothing writes to it
  const p = row.payload;
  const body = Buffer.isBuffer(p) ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength);
  const timestamp = Math.floor(now.getTime() / 1000);
  // {{field}} placeholders (issue 14) filled from the fields stored with the message
  const target = resolveTarget(sub.url, sub.headers, row.headers, row.sequence);
  const headers: Record<string, string> = {
    "user-agent": USER_AGENT,
    "content-type": row.content_type,
    "stock-sync-subject": row.subject,
    ...target.messageHeaders,
    ...(row.sequence !== null ? { "stock-sync-sequence": String(row.sequence) } : {}),
    ...target.subHeaders,
    ...signatureHeaders(sub.secrets, row.message_id, timestamp, body),
  };
  const sftp = sftpTarget(sub);
  return {
    url: target.url,
    method: sub.method,
    headers,
    body,
    timeoutMs: sub.timeout,
    // only a file drop or an SFTP upload names the file (#16: not worth a request's CPU otherwise)
    fileName: sftp || target.url.startsWith("file://") ? fileName(row) : "",
    sftp,
  };
}

/** An sftp:// subscription's connection: whose it is, its credentials and its limit. */
export function sftpTarget(sub: Subscription): SftpTarget | undefined {
  return sub.sftp ? { subscription: sub.name, options: sub.sftp, concurrency: sub.concurrency } : undefined;
}

const pad = (n: number | string, width: number) => String(n).padStart(width, "0");

const EXTENSIONS: Record<string, string> = {
  "text/csv": "csv",
  "application/json": "json",
  "application/x-ndjson": "ndjson",
};

// What may appear in a file name as it was stored; anything else (a "/", "..", a long event type
// or id from a signed but hostile request) is replaced by a hash, so a name is never a path.
const PLAIN_ID = /^[A-Za-z0-9_-]{1,64}$/;
const PLAIN_SUBJECT = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;
const KINDS = new Set(["full", "delta"]);
const DIGITS = /^\d{1,9}$/;
const MAX_PART = 64;

const hashed = (s: string) => `h${createHash("sha256").update(s).digest("hex").slice(0, 32)}`;
const plain = (s: string, ok: (s: string) => boolean) => (s.length <= MAX_PART && ok(s) ? s : hashed(s));

/**
 * Names for file:// destinations, sorting in delivery order: stock by sequence
 * (`000042-full-part-0001-of-0003.csv`), everything else by delivery id. Built only from parts
 * that pass a pattern (at most ~150 bytes in all); send.ts checks the result stays in the folder.
 */
export function fileName(row: DeliveryRow): string {
  const ext = EXTENSIONS[row.content_type.split(";")[0]!.trim()] ?? "bin";
  const gz = row.headers["content-encoding"] === "gzip" ? ".gz" : "";
  const kind = row.headers["stock-sync-kind"];
  if (row.sequence !== null && kind) {
    const [i = "1", n = "1"] = (row.headers["stock-sync-part"] ?? "1/1").split("/");
    const digits = (d: string) => (DIGITS.test(d) ? pad(d, 4) : "0000");
    const k = KINDS.has(kind) ? kind : hashed(kind);
    return `${pad(row.sequence, 6)}-${k}-part-${digits(i)}-of-${digits(n)}.${ext}${gz}`;
  }
  const subject = plain(row.subject, (s) => PLAIN_SUBJECT.test(s));
  const id = plain(row.message_id, (s) => PLAIN_ID.test(s));
  return `${pad(row.id, 12)}-${subject}-${id}.${ext}${gz}`;
}
