import type { Queryable } from "../db/db.js";
import { newMessageId } from "../outbox/ids.js";
import { notifyOutbox } from "../outbox/queries.js";
import type { MessageFields } from "./fields.ts";
import { collector } from "./gc.ts";
import { wire } from "./multipart.ts";
import { FIELDS_HEADER } from "./placeholders.ts";
import { insertOwnMessages, type OwnMessage, takeSequences } from "./queries.ts";
import { finalBody, type Rendered } from "./stock.ts";

export type RunInfo = { kind: "full" | "delta"; snapshotId: string; runId: number; now: Date; takenAt: Date };

/**
 * Enqueues each subscription's own messages, in order, inside the run's state transaction: one
 * message per body with one delivery, numbered from the subscription's next sequence (so a body
 * that names `sequence` carries the very number in `stock-sync-sequence`).
 */
export async function enqueueRendered(
  tx: Queryable,
  rendered: readonly Rendered[],
  run: RunInfo,
): Promise<void> {
  const sent = collector(); // bounds a full's garbage (gc.ts)
  for (const r of rendered) {
    const parts = r.messages.length;
    if (!parts) continue;
    const first = await takeSequences(tx, r.format.name, parts);
    let batch: OwnMessage[] = [];
    let bytes = 0;
    for (const [i, m] of r.messages.entries()) {
      const msg = fieldsOf(run, first + i, i + 1, parts);
      const { payload: body, contentType } = wire(r.format.body, await finalBody(r, m, msg));
      batch.push({
        id: newMessageId(run.now),
        subject: `stock.${run.kind}`,
        payload: body,
        contentType,
        headers: {
          "stock-sync-kind": run.kind,
          "stock-sync-snapshot-id": run.snapshotId,
          "stock-sync-part": `${i + 1}/${parts}`,
          // what {{field}} placeholders in the url and headers are filled with at send time
          ...(r.format.placeholders ? { [FIELDS_HEADER]: JSON.stringify({ ...m.first, ...msg }) } : {}),
        },
        runId: run.runId,
        sequence: msg.sequence,
      });
      bytes += body.length;
      sent(body.length);
      if (batch.length >= BATCH_MESSAGES || bytes >= BATCH_BYTES) {
        await insertOwnMessages(tx, r.format.name, batch);
        batch = [];
        bytes = 0;
      }
    }
    await insertOwnMessages(tx, r.format.name, batch);
    await notifyOutbox(tx, [r.format.name]);
  }
}

// a statement's parameters stay well below PostgreSQL's 1 GB message limit
const BATCH_MESSAGES = 1000;
const BATCH_BYTES = 4 * 1024 * 1024; // bytea goes as hex text: several copies of this in memory

export const fieldsOf = (
  run: Pick<RunInfo, "kind" | "snapshotId" | "takenAt">,
  sequence: number,
  part: number,
  parts: number,
): MessageFields => ({
  kind: run.kind,
  snapshot_id: run.snapshotId,
  sequence,
  part,
  parts,
  taken_at: run.takenAt.toISOString(),
});

/** `--out - --subscription NAME`: the bodies one after another, numbered from the next sequence. */
export async function writeBodies(
  out: NodeJS.WritableStream,
  r: Rendered,
  run: Pick<RunInfo, "kind" | "snapshotId" | "takenAt">,
  firstSequence: number,
): Promise<void> {
  for (const [i, m] of r.messages.entries()) {
    const rendered = await finalBody(r, m, fieldsOf(run, firstSequence + i, i + 1, r.messages.length));
    const body = wire(r.format.body, rendered).payload;
    if (!out.write(body)) await new Promise((resolve) => out.once("drain", resolve));
  }
}
