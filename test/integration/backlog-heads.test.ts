import { expect, it } from "vitest";
import type { Queryable } from "../../src/db/db.js";
import { openPostgres } from "../../src/db/pg.js";
import { replay } from "../../src/outbox/admin.js";
import { dueDeliveries, insertDeliveries, insertMessage } from "../../src/outbox/queries.js";
import { purgeDelivered } from "../../src/outbox/retention.js";
import { prng as mulberry } from "../helpers/fuzz.js";
import { describeEachDb } from "../helpers/db.js";

/**
 * Migration 0007's delivery_heads (each ordering key's oldest owed delivery and its due time) is
 * what the `key` fetch reads: it must follow every write to the backlog, by any writer, and the
 * fetches must return what the queries they replace returned (as sets: they now go earliest due
 * first).
 */
const OWED = "status in ('pending', 'failed')";
const SUBS = ["a", "b"];
const LEASE = { owner: "heads", forMs: 1000, until: new Date(Date.now() + 3600_000) };

const headsNow = async (db: Queryable) =>
  (
    await db.query<{ s: string; k: string; id: string; due: Date }>(
      "select subscription as s, ordering_key as k, delivery_id::text as id, due_at as due from stock_sync.delivery_heads order by 1, 2",
    )
  ).rows;

/** The heads computed from the backlog itself. */
const headsExpected = async (db: Queryable) =>
  (
    await db.query<{ s: string; k: string; id: string; due: Date }>(
      `select distinct on (subscription, ordering_key) subscription as s, ordering_key as k, id::text as id,
              next_attempt_at as due
       from stock_sync.deliveries d where ${OWED} and ordering_key is not null
       order by subscription, ordering_key, d.id`,
    )
  ).rows;

/** Under `key`, a dead delivery holds its key until replayed (issue 17.13). */
const KEY_NOT_HELD = `(d.ordering_key is null or not exists (select 1 from stock_sync.deliveries x
  where x.subscription = d.subscription and x.ordering_key = d.ordering_key and x.status = 'dead' and x.id < d.id))`;

/** main's fetch (before 0007, with the dead-key hold), the reference for which rows may start. */
async function dueBefore(db: Queryable, sub: string, ordering: "key" | "none", now: Date, skip: number[]) {
  const due =
    ordering === "key"
      ? `(select distinct on (coalesce(ordering_key, message_id)) id from stock_sync.deliveries
          where subscription = $1 and ${OWED} order by coalesce(ordering_key, message_id), id) h
         join stock_sync.deliveries d on d.id = h.id`
      : "stock_sync.deliveries d";
  const { rows } = await db.query<{ id: string }>(
    `select d.id::text as id from ${due} where d.subscription = $1 and d.${OWED} and d.next_attempt_at <= $2
       and d.id <> all($3::int8[])${ordering === "key" ? ` and ${KEY_NOT_HELD}` : ""} order by d.id`,
    [sub, now, skip],
  );
  return rows.map((r) => r.id);
}

describeEachDb("delivery_heads and the fetches", (t) => {
  let messages = 0;
  async function enqueue(db: Queryable, key: string | null, subs: string[]) {
    const id = `m${++messages}`;
    await insertMessage(db, {
      id,
      subject: "order.updated",
      payload: Buffer.from("{}"),
      contentType: "application/json",
      headers: {},
      orderingKey: key,
      runId: null,
    });
    await insertDeliveries(
      db,
      id,
      key,
      subs,
      subs.map(() => null),
    );
  }

  it("follow enqueues, outcomes, replays, supersedes, purges and truncates", async () => {
    const db = t().db;
    await db.query(
      "insert into stock_sync.subscriptions (name, lease_owner, lease_until) select n, $2, $3::timestamptz + interval '1 hour' from unnest($1::text[]) n",
      [SUBS, LEASE.owner, LEASE.until],
    );
    const random = mulberry(11).next;
    const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)]!;
    const keys = ["k1", "k2", "k3", "k4", null];
    const base = Date.now();
    const at = (offsetS: number) => new Date(base + offsetS * 1000);
    const ids = async (where: string) =>
      (
        await db.query<{ id: string }>(`select id::text as id from stock_sync.deliveries where ${where}`)
      ).rows.map((r) => r.id);
    const ops: Record<string, () => Promise<unknown>> = {
      enqueue: () => enqueue(db, pick(keys), random() < 0.7 ? SUBS : [pick(SUBS)]),
      // several rows in one statement, as an outcome batch writes them
      outcomes: async () => {
        const owed = await ids(OWED);
        const batch = owed.filter(() => random() < 0.3);
        const status = batch.map(() => pick(["delivered", "failed", "failed", "dead"]));
        await db.query(
          `update stock_sync.deliveries d set status = u.status, attempts = d.attempts + 1,
             next_attempt_at = case when u.status = 'failed' then $3::timestamptz + u.n * interval '1 second'
                                    else d.next_attempt_at end
           from unnest($1::int8[], $2::text[]) with ordinality as u(id, status, n) where d.id = u.id`,
          [batch, status, at(random() * 20 - 10)],
        );
      },
      replay: async () => {
        const gone = await ids("status in ('dead', 'failed')");
        if (gone.length) await replay(db, { ids: [pick(gone)] }, at(random() * 10 - 5));
      },
      supersede: () =>
        db.query(`update stock_sync.deliveries set status = 'superseded' where id in (
          select id from stock_sync.deliveries where ${OWED} order by random() limit 3)`),
      purge: () => purgeDelivered(db, at(3600), 0),
      "message deleted (cascade)": () =>
        db.query(`delete from stock_sync.messages where id in (
          select message_id from stock_sync.deliveries where ${OWED} order by random() limit 1)`),
    };
    const names = Object.keys(ops);
    for (let step = 0; step < 300; step++) {
      const name = step < 20 ? "enqueue" : pick(names);
      await ops[name]!();
      expect({ step, name, heads: await headsNow(db) }).toEqual({
        step,
        name,
        heads: await headsExpected(db),
      });
      if (step % 10 !== 0) continue;
      // the fetches return what main's did (skipping what is in flight), for both orderings
      const now = at(random() * 20 - 10);
      for (const sub of SUBS) {
        for (const ordering of ["key", "none"] as const) {
          const skip = (await dueBefore(db, sub, ordering, now, [])).filter(() => random() < 0.3).map(Number);
          const got = await dueDeliveries(db, sub, ordering, now, 10_000, skip, LEASE);
          const want = await dueBefore(db, sub, ordering, now, skip);
          expect({ step, sub, ordering, ids: got.map((r) => String(r.id)).sort() }).toEqual({
            step,
            sub,
            ordering,
            ids: want.sort(),
          });
        }
      }
    }
    await db.query("truncate stock_sync.deliveries cascade");
    expect(await headsNow(db)).toEqual([]);
  });

  it("two writers of one key, in either order, leave its true head (postgres: concurrent sessions)", async () => {
    if (!t().url) return; // PGlite has one session: writers cannot interleave
    const db = t().db;
    const other = openPostgres(t().url!, { poolSize: 2 });
    try {
      await db.query("truncate stock_sync.deliveries cascade");
      for (const first of ["enqueue", "deliver"] as const) {
        await enqueue(db, "race", ["a"]);
        const [{ id: head }] = (
          await db.query<{ id: string }>(
            `select id::text as id from stock_sync.deliveries where ordering_key = 'race' and ${OWED}`,
          )
        ).rows as [{ id: string }];
        // One transaction delivers the key's only owed row while another enqueues the next one:
        // whichever commits last must see the other's row.
        const deliver = async (q: Queryable) => {
          await q.query("update stock_sync.deliveries set status = 'delivered' where id = $1", [head]);
        };
        const enqueueNext = (q: Queryable) => enqueue(q, "race", ["a"]);
        let second: Promise<unknown> = Promise.resolve();
        await db.tx(async (tx1) => {
          await (first === "enqueue" ? enqueueNext(tx1) : deliver(tx1));
          // the second writer now waits for the key's row until tx1 commits
          second = other.tx((tx2) => (first === "enqueue" ? deliver(tx2) : enqueueNext(tx2)));
          await new Promise((r) => setTimeout(r, 200));
        });
        await second;
        expect({ first, heads: await headsNow(db) }).toEqual({ first, heads: await headsExpected(db) });
        expect((await headsNow(db)).length).toBe(1);
        await db.query("truncate stock_sync.deliveries cascade");
      }
    } finally {
      await other.close();
    }
  });
});
