/**
 * A rendered body as the one file part of a multipart/form-data request (RFC 7578): what
 * Salesforce Omnichannel Inventory's upload endpoint takes (`fileUpload`). `max_bytes` bounds the
 * file, as the OMS's limit does; the envelope adds a couple of hundred bytes.
 */
import { randomBytes } from "node:crypto";
import type { StockBody } from "./render.ts";

export type Wire = { payload: Buffer; contentType: string };

/** The payload and content type one message is stored (and sent) with. */
export function wire(body: StockBody, rendered: Buffer): Wire {
  const part = body.multipart;
  if (!part) return { payload: rendered, contentType: body.contentType };
  let boundary: string;
  do boundary = `stock-sync-${randomBytes(12).toString("hex")}`;
  while (rendered.includes(boundary)); // never inside the file (a 1 in 2^96 chance, checked anyway)
  const head =
    `--${boundary}\r\nContent-Disposition: form-data; name="${part.field}"; filename="${part.filename}"\r\n` +
    `Content-Type: ${body.contentType}\r\n\r\n`;
  return {
    payload: Buffer.concat([Buffer.from(head), rendered, Buffer.from(`\r\n--${boundary}--\r\n`)]),
    contentType: `multipart/form-data; boundary=${boundary}`,
  };
}
