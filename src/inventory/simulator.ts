import type { Db } from "../db/db.js";
import type { Logger } from "../log.js";

/**
 * Demo only: every `intervalMs`, nudges a few on-hand quantities in the demo inventory (and
 * sometimes opens or releases a reservation) so a newcomer sees deltas appear after the first full.
 */
export function startSimulator(
  db: Db,
  log: Logger,
  opts: { intervalMs: number; changes: number },
): () => void {
  const step = async () => {
    try {
      await db.tx(async (tx) => {
        await tx.query(
          `update inventory.stock_on_hand s set quantity = greatest(s.quantity + (floor(random() * 9) - 3)::int, 0),
             updated_at = now()
           from (select sku, location from inventory.stock_on_hand order by random() limit $1) pick
           where s.sku = pick.sku and s.location = pick.location`,
          [opts.changes],
        );
        await tx.query(
          `insert into inventory.reservations (sku, location, quantity)
           select sku, location, 1 from inventory.stock_on_hand where quantity > 2 order by random() limit 1`,
        );
        await tx.query(
          `update inventory.reservations set status = 'released'
           where id = (select id from inventory.reservations where status = 'open' order by random() limit 1)`,
        );
      });
      log.debug({ changes: opts.changes }, "simulator changed demo stock");
    } catch (err) {
      log.warn({ err }, "simulator step failed");
    }
  };
  const timer = setInterval(() => void step(), opts.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
