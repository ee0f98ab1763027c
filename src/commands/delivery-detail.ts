/**
 * `stock-sync deliveries --id ID`: one delivery (by delivery id or webhook-id), its attempts and,
 * for an import job (issue 15), the job's phase, the OMS's ids and the records it rejected.
 */
import type { Queryable } from "../db/db.js";
import { ConnectorError } from "../errors.js";
import { type JobRow, loadJob } from "../jobs/state.js";
import { table, when } from "./format.js";

type DeliveryInfo = {
  id: number;
  message_id: string;
  subscription: string;
  subject: string;
  status: string;
  attempts: number;
  sequence: number | null;
  created_at: Date;
  last_error: string | null;
};
type AttemptInfo = {
  attempted_at: Date;
  duration_ms: number;
  status: number | null;
  outcome: string;
  error: string | null;
  response_body: string | null;
};

export type DeliveryDetail = { delivery: DeliveryInfo; attempts: AttemptInfo[]; job: JobRow | null };

export async function deliveryDetail(db: Queryable, id: string): Promise<DeliveryDetail> {
  const { rows } = await db.query<DeliveryInfo>(
    `select d.id, d.message_id, d.subscription, m.subject, d.status, d.attempts, d.sequence, d.created_at, d.last_error
     from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
     where d.message_id = $1 or ($1 ~ '^[0-9]{1,18}$' and d.id = $1::int8) order by d.id limit 1`,
    [id],
  );
  const delivery = rows[0];
  if (!delivery) throw new ConnectorError("NOT_FOUND", `no delivery with id ${id}`);
  const deliveryId = Number(delivery.id);
  const attempts = await db.query<AttemptInfo>(
    `select attempted_at, duration_ms, status, outcome, error, response_body from stock_sync.attempts
     where delivery_id = $1 order by id`,
    [deliveryId],
  );
  return {
    delivery: { ...delivery, id: deliveryId },
    attempts: attempts.rows,
    job: await loadJob(db, deliveryId),
  };
}

/** The detail for people. */
export function formatDetail(d: DeliveryDetail, out: NodeJS.WritableStream): string {
  const { delivery: v, job } = d;
  const lines = [
    `delivery ${v.id} (webhook-id ${v.message_id}) to ${v.subscription}: ${v.subject}, ${v.status}, ${v.attempts} attempt(s)`,
    "",
    table(
      ["ATTEMPTED", "MS", "STATUS", "OUTCOME", "ERROR"],
      d.attempts.map((a) => [
        when(a.attempted_at),
        a.duration_ms,
        a.status ?? "-",
        a.outcome,
        a.error ?? "-",
      ]),
      out,
    ),
  ];
  if (job) {
    lines.push(
      `import job: ${job.phase}, ${job.polls} poll(s), OMS ids ${JSON.stringify(job.responses)}`,
      `rejected records: ${job.rejected_count}${job.rejected_count > job.rejected.length ? ` (first ${job.rejected.length} shown)` : ""}`,
    );
    if (job.rejected.length)
      lines.push(
        table(
          ["SKU", "LOCATION", "REASON"],
          job.rejected.map((r) => [r.sku ?? "-", r.location ?? "-", r.reason]),
          out,
        ),
      );
  }
  return `${lines.join("\n")}\n`;
}
