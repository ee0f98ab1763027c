import { createHash } from "node:crypto";

/**
 * The fields a body, a URL or a header may name (issue 14): per stock row, and per message.
 * Pure: no I/O, no config.
 */
export const ROW_FIELDS = ["sku", "location", "quantity", "record_id"] as const;
export const MESSAGE_FIELDS = ["kind", "snapshot_id", "sequence", "part", "parts", "taken_at"] as const;
export const STOCK_FIELDS: readonly string[] = [...ROW_FIELDS, ...MESSAGE_FIELDS];
/** Known only once the message is enqueued (sequence) or the whole run is cut (parts). */
export const LATE_FIELDS: readonly string[] = ["sequence", "parts"];
/** What an order event's template sees beside the event's own fields. */
export const EVENT_FIELDS = ["id", "subject", "received_at"] as const;

export type RowField = (typeof ROW_FIELDS)[number];
export type MessageField = (typeof MESSAGE_FIELDS)[number];

/** A stock row as rendered: our key (or the OMS's codes after mapping) and the absolute quantity. */
export type Row = { sku: string; location: string; quantity: number; record_id?: string };

export type MessageFields = {
  kind: "full" | "delta";
  snapshot_id: string;
  sequence: number;
  part: number;
  parts: number;
  /** ISO time of the source's snapshot: usable as an effective date. */
  taken_at: string;
};

/**
 * A stable id per key and snapshot, UUID-shaped (Salesforce OCI's recordId is a free string
 * but UUIDs are what its examples use): the same key in the same snapshot gives the same id, so
 * a retried upload is recognised; another snapshot gives another id.
 */
export function recordId(snapshotId: string, sku: string, location: string): string {
  const h = createHash("sha256").update(`${snapshotId}\0${sku}\0${location}`).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

/** The widest value a late field can take: bodies are cut with it, so the real one never exceeds. */
export const WIDEST_LATE = Number.MAX_SAFE_INTEGER;
