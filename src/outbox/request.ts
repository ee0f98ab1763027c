import { signatureHeaders } from "../subscriptions/signing.js";
import type { Subscription } from "../subscriptions/subscriptions.js";
import type { DeliveryRow } from "./queries.js";
import type { OutboundRequest } from "./send.js";

const USER_AGENT = "stock-sync/0.1";

/** The exact request one attempt sends (SPEC §5); signed with this attempt's timestamp. */
export function buildRequest(sub: Subscription, row: DeliveryRow, now: Date): OutboundRequest {
  const body = Buffer.from(row.payload);
  const timestamp = Math.floor(now.getTime() / 1000);
  const headers: Record<string, string> = {
    "user-agent": USER_AGENT,
    "content-type": row.content_type,
    "stock-sync-subject": row.subject,
    ...row.headers,
    ...(row.sequence !== null ? { "stock-sync-sequence": String(row.sequence) } : {}),
    ...sub.headers,
    ...signatureHeaders(sub.secrets, row.message_id, timestamp, body),
  };
  return { url: sub.url, method: sub.method, headers, body, timeoutMs: sub.timeout, fileName: fileName(row) };
}

const pad = (n: number | string, width: number) => String(n).padStart(width, "0");

const EXTENSIONS: Record<string, string> = { "text/csv": "csv", "application/json": "json" };

/**
 * Names for file:// destinations, sorting in delivery order: stock by sequence
 * (`000042-full-part-0001-of-0003.csv`), everything else by delivery id.
 */
export function fileName(row: DeliveryRow): string {
  const ext = EXTENSIONS[row.content_type.split(";")[0]!.trim()] ?? "bin";
  const gz = row.headers["content-encoding"] === "gzip" ? ".gz" : "";
  const kind = row.headers["stock-sync-kind"];
  if (row.sequence !== null && kind) {
    const [i = "1", n = "1"] = (row.headers["stock-sync-part"] ?? "1/1").split("/");
    return `${pad(row.sequence, 6)}-${kind}-part-${pad(i, 4)}-of-${pad(n, 4)}.${ext}${gz}`;
  }
  return `${pad(row.id, 12)}-${row.subject}-${row.message_id}.${ext}${gz}`;
}
