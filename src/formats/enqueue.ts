import type { Queryable } from "../db/db.js";
import { newMessageId } from "../outbox/ids.js";
import { insertDeliveries, insertMessage, nextSequence, notifyOutbox } from "../outbox/queries.js";
import type { MessageFields } from "./fields.ts";
import { FIELDS_HEADER } from "./placeholders.ts";
import { finalBody, type Rendered } from "./stock.ts";

export type RunInfo = { kind: "full" | "delta"; snapshotId: string; runId: number; now: Date; takenAt: Date };

/**
 * Enqueues each subscription's own messages, in order, inside the run's state transaction: one
 * message per body with one delivery, whose sequence is that subscription's next (so a body that
 * names `sequence` carries the very number in `stock-sync-sequence`).
 */
export async function enqueueRendered(
  tx: Queryable,
  rendered: readonly Rendered[],
  run: RunInfo,
): Promise<void> {
  for (const r of rendered) {
    const parts = r.messages.length;
    for (const [i, m] of r.messages.entries()) {
      const sequence = await nextSequence(tx, r.format.name);
      const msg = fieldsOf(run, sequence, i + 1, parts);
      const body = await finalBody(r, m, msg);
      const id = newMessageId(run.now);
      await insertMessage(tx, {
        id,
        subject: `stock.${run.kind}`,
        payload: body,
        contentType: r.format.body.contentType,
        headers: {
          "stock-sync-kind": run.kind,
          "stock-sync-snapshot-id": run.snapshotId,
          "stock-sync-part": `${i + 1}/${parts}`,
          // what {{field}} placeholders in the url and headers are filled with at send time
          ...(r.format.placeholders ? { [FIELDS_HEADER]: JSON.stringify({ ...m.first, ...msg }) } : {}),
        },
        orderingKey: null,
        runId: run.runId,
      });
      await insertDeliveries(tx, id, null, [r.format.name], [sequence]);
    }
    if (parts) await notifyOutbox(tx, [r.format.name]);
  }
}

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
    const body = await finalBody(r, m, fieldsOf(run, firstSequence + i, i + 1, r.messages.length));
    if (!out.write(body)) await new Promise((resolve) => out.once("drain", resolve));
  }
}
