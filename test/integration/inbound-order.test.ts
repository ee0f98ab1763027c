/**
 * Two intake batches in flight (#16) must look serial to a fifo worker: delivery ids in intake
 * order, and no batch visible before an earlier one. The fault: the first batch's commit is held
 * open (a deferred trigger waits on an advisory lock a second connection holds) while the second
 * batch could write and commit; the fifo worker, reading the lowest owed id it can see, would
 * then send the second event first.
 */
import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { Received } from "../../src/inbound/batch.js";
import { createIntake } from "../../src/inbound/intake.js";
import { useCleanup } from "../helpers/cleanup.js";
import { createTestDb, describeEachDb, type TestDb } from "../helpers/db.js";
import { quietLog, startEngine, subscriptionYaml, testConfig, waitUntil } from "../helpers/engine.js";

const { cleanup, receiver } = useCleanup();

const received = (id: string, orderId = `O-${id}`): Received => ({
  event: { id, subject: "order.created", orderId },
  payload: { body: Buffer.from(JSON.stringify({ id })), contentType: "application/json" },
  now: new Date(),
});

const sentIds = (requests: { body: Buffer }[]) =>
  requests.map((q) => JSON.parse(q.body.toString()).id as string);

/** A fifo subscription delivering to a receiver, and an intake writing for it. */
async function fifoSetup(db: TestDb["db"], name: string, inFlight: 1 | 2 = 2) {
  const r = await receiver();
  const e = await startEngine(
    db,
    testConfig(`subscriptions:\n${subscriptionYaml(name, r.url, "    ordering: fifo\n")}`),
  );
  cleanup.push(() => e.stop());
  const warnings: string[] = [];
  const log = Object.assign(Object.create(quietLog), {
    warn: (_: unknown, msg: string) => warnings.push(msg),
  }) as typeof quietLog;
  return { r, intaker: createIntake({ db, log, subscriptions: e.subs, inFlight }), warnings };
}

const HOLD = 0x5445_5354; // the advisory lock the held commit waits on

const pgTemplate = inject("pgTemplate");

(pgTemplate ? describe : describe.skip)("inbound ordering with a batch's commit held open [postgres]", () => {
  let t: Awaited<ReturnType<typeof createTestDb>>;
  let failed = false;
  beforeAll(async () => {
    t = await createTestDb("postgres");
    // test-only: the commit of a transaction that inserted inbox row 'held-1' waits for HOLD
    await t.db.query(`create function stock_sync.test_hold_commit() returns trigger language plpgsql as $$
      begin
        if new.id = 'held-1' then perform pg_advisory_xact_lock(${HOLD}); end if;
        return null;
      end $$`);
    await t.db.query(`create constraint trigger test_hold_commit after insert on stock_sync.inbox
      deferrable initially deferred for each row execute function stock_sync.test_hold_commit()`);
  });
  afterAll(async () => {
    await t?.drop(failed);
  });

  it("a later batch neither commits nor is delivered before an earlier one still committing", async () => {
    failed = true;
    const { r, intaker } = await fifoSetup(t.db, "fifo-held");
    const blocker = new pg.Client({ connectionString: t.url! });
    await blocker.connect();
    cleanup.push(() => blocker.end());
    await blocker.query("select pg_advisory_lock($1)", [HOLD]);

    const first = intaker.intake(received("held-1"));
    // the first batch's statement is done (its ids taken) and its commit waits on the lock
    await waitUntil(
      async () => (await waiting(blocker, "advisory")) > 0,
      15_000,
      "the first batch's commit to wait",
    );
    let secondDone = false;
    const second = intaker.intake(received("held-2")).finally(() => {
      secondDone = true;
    });
    // Either the second batch waits for the first's commit (its statement done, its transaction
    // open), or, were it allowed to, it commits at once and the worker may send it meanwhile.
    const outcome = await waitUntil(
      async () => (secondDone ? "committed" : (await idleInTransaction(blocker)) > 0 ? "waiting" : false),
      15_000,
      "the second batch to commit or wait",
    );
    if (outcome === "committed") await r.waitFor(1); // what a worker would do with it
    await blocker.query("select pg_advisory_unlock($1)", [HOLD]);

    expect(await first).toMatchObject({ duplicate: false });
    expect(await second).toMatchObject({ duplicate: false });
    expect(sentIds(await r.waitFor(2))).toEqual(["held-1", "held-2"]);
    const { rows } = await t.db.query<{ message_id: string }>(
      "select message_id from stock_sync.deliveries where message_id like 'evt_held-%' order by id",
    );
    expect(rows.map((x) => x.message_id)).toEqual(["evt_held-1", "evt_held-2"]);
    failed = false;
  });
  it("a later batch takes its delivery ids after an earlier one whose statement is slow", async () => {
    failed = true;
    const { r, intaker } = await fifoSetup(t.db, "fifo-slow");
    const blocker = new pg.Client({ connectionString: t.url! });
    await blocker.connect();
    cleanup.push(() => blocker.end());
    // an uncommitted inbox row with the first event's id: its insert waits on the primary key,
    // before any delivery id is drawn
    await blocker.query("begin");
    await blocker.query(
      "insert into stock_sync.inbox (id, subject, received_at, message_id, routed_to) values ('slow-1', 'x', now(), 'x', 0)",
    );
    const first = intaker.intake(received("slow-1"));
    await waitUntil(
      async () => (await waiting(blocker, "transactionid")) > 0,
      15_000,
      "the first batch's statement to wait",
    );
    const second = intaker.intake(received("slow-2"));
    // A second batch allowed to run now would take its ids first, then wait for the first's
    // commit. Not observable when it rightly waits its turn: a bounded window, not a timing check.
    await waitUntil(async () => (await idleInTransaction(blocker)) > 0, 2000, "").catch(() => undefined);
    await blocker.query("rollback");

    expect(await first).toMatchObject({ duplicate: false });
    expect(await second).toMatchObject({ duplicate: false });
    const { rows } = await t.db.query<{ message_id: string }>(
      "select message_id from stock_sync.deliveries where message_id like 'evt_slow-%' order by id",
    );
    expect(rows.map((x) => x.message_id)).toEqual(["evt_slow-1", "evt_slow-2"]);
    expect(sentIds(await r.waitFor(2))).toEqual(["slow-1", "slow-2"]);
    failed = false;
  });
});

/** Backends of this database waiting on a lock of this type (pg_locks.locktype). */
const waiting = async (c: pg.Client, locktype: string) =>
  Number(
    (
      await c.query(
        `select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid
         where not l.granted and l.locktype = $1 and a.datname = current_database()`,
        [locktype],
      )
    ).rows[0].count,
  );

/**
 * Backends of this database in an open transaction after an intake statement, for a while: a
 * batch that is not held there passes through that state too, between its statement and its
 * commit, but only for the moment it takes the client to send the commit.
 */
const idleInTransaction = async (c: pg.Client) =>
  Number(
    (
      await c.query(
        `select count(*) from pg_stat_activity where datname = current_database()
         and state = 'idle in transaction' and query like '%stock_sync.inbox%'
         and state_change < clock_timestamp() - interval '300 milliseconds'`,
      )
    ).rows[0].count,
  );

describeEachDb("inbound ordering, one or two batches in flight", (t) => {
  it.each([1, 2] as const)(
    "%i in flight: a fifo receiver gets concurrent events in intake order, a batch retried one by one keeping its place",
    async (inFlight) => {
      await t().db.query(
        "alter table stock_sync.messages add constraint test_poison check (ordering_key <> 'poison')",
      );
      cleanup.push(() => t().db.query("alter table stock_sync.messages drop constraint test_poison"));
      const { r, intaker, warnings } = await fifoSetup(t().db, `fifo-many-${inFlight}`, inFlight);
      const tag = randomBytes(3).toString("hex");
      const ids = Array.from({ length: 120 }, (_, n) => `many-${tag}-${String(n).padStart(3, "0")}`);
      const poison = ids[60]!;
      const answers = await Promise.all(
        ids.map((id) =>
          intaker.intake(received(id, id === poison ? "poison" : undefined)).then(
            () => "stored",
            (e: unknown) => (e as { code?: string }).code,
          ),
        ),
      );
      expect(answers.filter((a) => a !== "stored")).toEqual(["23514"]);
      expect(intaker.stats().batches).toBeGreaterThan(1);
      expect(warnings).toContain("inbound batch failed: writing its events one by one");
      const good = ids.filter((id) => id !== poison);
      expect(sentIds(await r.waitFor(good.length))).toEqual(good);
    },
  );
});
