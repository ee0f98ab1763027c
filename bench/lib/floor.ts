import PQueue from "p-queue";
import { createCoalescer } from "../../src/db/coalesce.js";
import type { Db, Queryable } from "../../src/db/db.js";
import { type BusyClock, cpuSince, serverCpu, timedDb, watch } from "./timing.js";

/**
 * The floor of a delivery with a per-message record (#16): the HTTP ceiling's requests (the same
 * undici client, `concurrency` in flight) plus the least a crash-safe engine must write for each
 * answer, and nothing else. That is: the backlog read once (ids and payloads, one statement), and
 * for every answered request one attempt row inserted and its delivery marked delivered, fenced
 * the way the engine's outcomes are (still owed, and the subscription's lease still ours), in
 * group commits as the engine makes them (db/coalesce.ts, two batches in flight), with at most
 * `concurrency` answered requests waiting for their record outside a slot (the duplicates
 * bound). No due query, no last checks, no status reads, no request building or signing, no
 * subscription row written. What the product does beyond this is the engine's own cost.
 */
export async function floorRun(
  db: Db,
  clocks: { db: BusyClock; http: BusyClock },
  subscription: string,
  n: number,
  concurrency: number,
  post: (body: Uint8Array) => Promise<number>,
) {
  const owner = `floor-${process.pid}`;
  await db.query(
    `insert into stock_sync.subscriptions (name, status, lease_owner, lease_until)
     values ($1, 'enabled', $2, now() + interval '1 hour')
     on conflict (name) do update set lease_owner = $2, lease_until = now() + interval '1 hour'`,
    [subscription, owner],
  );
  const timed = timedDb(db, clocks.db);
  const records = createCoalescer<Answered, boolean>(
    async (batch) => {
      const written = await recordFloor(timed, batch, owner);
      return batch.map((a) => ({ status: "fulfilled", value: written.has(a.id) }));
    },
    { inFlight: 2, mayOverlap: () => true },
  );
  const sends = new PQueue({ concurrency });
  // for investigations: how much the duplicates bound costs (BENCH_FLOOR_UNRECORDED=5000)
  const bound = Number(process.env.BENCH_FLOOR_UNRECORDED ?? concurrency);
  let recorded = 0;
  let waiting = 0;
  const server = await serverCpu(db);
  const cpu0 = process.cpuUsage();
  const watching = watch(clocks);
  const started = performance.now();
  try {
    const { rows } = await timed.query<{ id: string; payload: Uint8Array }>(
      `select d.id, m.payload from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
       where d.subscription = $1 and d.status in ('pending', 'failed') order by d.id`,
      [subscription],
    );
    if (rows.length !== n) throw new Error(`the floor's backlog holds ${rows.length} deliveries, not ${n}`);
    const recording: Promise<void>[] = [];
    await Promise.all(
      rows.map((row) =>
        sends.add(async () => {
          const at = new Date();
          const t0 = performance.now();
          const status = await post(row.payload);
          const rec = records
            .submit({ id: Number(row.id), at, durationMs: Math.round(performance.now() - t0), status })
            .then((ok) => {
              if (ok) recorded++;
            })
            .finally(() => waiting--);
          recording.push(rec);
          // as the engine: past `concurrency` answers waiting for their record, the slot waits too
          if (++waiting > bound) await rec;
        }),
      ),
    );
    await Promise.all(recording);
    const rate = recorded / ((performance.now() - started) / 1000);
    const cpu = { processMs: cpuSince(cpu0), serverMs: await server.stop() };
    return { rate, delivered: recorded, where: { ...watching.stop(), cpu, items: recorded } };
  } finally {
    await db.query(
      "update stock_sync.subscriptions set lease_owner = null, lease_until = null where name = $1",
      [subscription],
    );
  }
}

type Answered = { id: number; at: Date; durationMs: number; status: number };

/**
 * The minimum record of a batch of successes: recordSuccessGroups' fence, delivery update and
 * attempt rows (outcome.ts), without its subscription row (failure state, last success). One
 * statement, prepared by name, as the engine's. The ids the fence let through.
 */
async function recordFloor(db: Queryable, batch: Answered[], owner: string): Promise<Set<number>> {
  const now = new Date();
  const { rows } = await db.query<{ written: (number | string)[] }>(
    `with u as (select u.* from unnest($1::int8[], $2::timestamptz[], $3::int[], $4::int[])
                  as u(id, started_at, duration_ms, http_status)
                join stock_sync.deliveries f on f.id = u.id and f.status in ('pending', 'failed')
                join stock_sync.subscriptions l on l.name = f.subscription and l.lease_owner = $5),
     d as (update stock_sync.deliveries d set status = 'delivered', attempts = d.attempts + 1,
             updated_at = $6, delivered_at = $6, last_status = u.http_status, last_error = null
           from u where d.id = u.id and d.status in ('pending', 'failed')
           returning d.id),
     a as (insert into stock_sync.attempts (delivery_id, attempted_at, duration_ms, status, response_body, outcome)
           select u.id, u.started_at, u.duration_ms, u.http_status, null, 'delivered' from d join u on u.id = d.id)
     select coalesce(array_agg(id), '{}') as written from d`,
    [
      batch.map((a) => a.id),
      batch.map((a) => a.at),
      batch.map((a) => a.durationMs),
      batch.map((a) => a.status),
      owner,
      now,
    ],
    { name: "bench_floor_record" },
  );
  return new Set((rows[0]?.written ?? []).map(Number));
}
