import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Queryable, Row } from "../../src/db/db.js";
import {
  backlogHead,
  backlogHeadMeta,
  backlogPayloadAfter,
  dueDeliveries,
  nextDueAt,
} from "../../src/outbox/queries.js";
import { createTestDb, type TestDb } from "../helpers/db.js";
import { buildOutage, dueNow } from "../helpers/outage.js";
import { inject } from "vitest";

/**
 * Issue 11.6: every backlog query reads a bounded number of rows, however large the backlog and
 * the history. Checked on the plans PostgreSQL runs (EXPLAIN ANALYZE of the product's own SQL and
 * arguments), not on times: no node reads more than BOUND rows (returned or filtered away), so
 * no sequential scan, sort or index walk over the 12,000-row backlogs.
 */
const BACKLOG = 12_000;
// the backlog the plans are read over: keyed and plain subscriptions, a history behind it
const OUTAGE = {
  history: 2 * BACKLOG,
  backlog: BACKLOG,
  keys: BACKLOG / 8,
  keyed: "keyed",
  plain: "plain",
  retryWithinS: 600,
};
const BOUND = 400;
/** A worker's read at concurrency 32 (worker.ts: 4 rows per slot, read when half are left). */
const LIMIT = 64;
const LEASE = { owner: "plans", forMs: 1000, until: new Date(Date.now() + 3600_000) };

type PlanNode = {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Actual Rows": number;
  "Actual Loops": number;
  "Rows Removed by Filter"?: number;
  "Rows Removed by Index Recheck"?: number;
  "Sort Method"?: string;
  Plans?: PlanNode[];
};

/** The plans of every statement `call` runs. */
async function plansOf(db: Queryable, call: (db: Queryable) => Promise<unknown>): Promise<PlanNode[]> {
  const plans: PlanNode[] = [];
  const explaining: Queryable = {
    async query<T extends Row = Row>(text: string, values?: readonly unknown[]) {
      const { rows } = await db.query<{ "QUERY PLAN": [{ Plan: PlanNode }] }>(
        `explain (analyze, format json) ${text}`,
        values,
      );
      plans.push(rows[0]!["QUERY PLAN"][0].Plan);
      return { rows: [] as T[], rowCount: 0 };
    },
  };
  await call(explaining);
  return plans;
}

/**
 * A session that reports the plan of every statement it runs, those run inside functions too
 * (auto_explain): the worker's read of the backlog is a function (migration 0015), whose plan is
 * made once per session and kept, so only the plan that runs inside it says what it reads.
 */
async function explainingSession(url: string) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const plans: PlanNode[] = [];
  client.on("notice", (n) => {
    const text = n.message ?? "";
    if (text.includes("plan:"))
      plans.push((JSON.parse(text.slice(text.indexOf("{"))) as { Plan: PlanNode }).Plan);
  });
  for (const set of [
    "load 'auto_explain'",
    "set auto_explain.log_min_duration = 0",
    "set auto_explain.log_analyze = on",
    "set auto_explain.log_nested_statements = on",
    "set auto_explain.log_format = 'json'",
    "set client_min_messages = log",
  ])
    await client.query(set);
  const db: Queryable = {
    async query<T extends Row = Row>(text: string, values?: readonly unknown[], opts?: { name?: string }) {
      const r = await client.query({
        text,
        values: values as unknown[],
        ...(opts?.name ? { name: opts.name } : {}),
      });
      return { rows: r.rows as T[], rowCount: r.rowCount ?? 0 };
    },
  };
  return {
    db,
    /** The plans of every statement `call` runs, nested ones included. */
    async plansOf(call: (db: Queryable) => Promise<unknown>): Promise<PlanNode[]> {
      plans.length = 0;
      await call(db);
      return [...plans];
    },
    close: () => client.end(),
  };
}

const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)];

/** Rows a node produced or looked at and dropped, over all its loops. */
const rowsRead = (n: PlanNode) =>
  (n["Actual Rows"] + (n["Rows Removed by Filter"] ?? 0) + (n["Rows Removed by Index Recheck"] ?? 0)) *
  Math.max(1, n["Actual Loops"]);

/** What a plan reads too much of, as readable lines (empty when bounded). */
function unbounded(plans: PlanNode[]): string[] {
  return plans.flatMap(nodes).flatMap((n) => {
    const what = `${n["Node Type"]}${n["Index Name"] ? ` using ${n["Index Name"]}` : ""}${n["Relation Name"] ? ` on ${n["Relation Name"]}` : ""}`;
    if (n["Node Type"] === "Seq Scan" && n["Relation Name"] !== "subscriptions") return [`${what}`];
    return rowsRead(n) > BOUND ? [`${what}: ${rowsRead(n)} rows`] : [];
  });
}

const pgSkip = !inject("pgTemplate");

(pgSkip ? describe.skip : describe)("backlog queries read a bounded number of rows [postgres]", () => {
  let t: TestDb & { drop(keep?: boolean): Promise<void> };
  let failed = false;
  const queries = (skip: Map<string, number[]>) => {
    const now = () => new Date();
    return {
      "due, key": (db: Queryable) =>
        dueDeliveries(db, "keyed", "key", now(), LIMIT, skip.get("keyed") ?? [], LEASE),
      "due, none": (db: Queryable) =>
        dueDeliveries(db, "plain", "none", now(), LIMIT, skip.get("plain") ?? [], LEASE),
      "nextDueAt, key": (db: Queryable) => nextDueAt(db, "keyed", now()),
      "nextDueAt, none": (db: Queryable) => nextDueAt(db, "plain", now()),
      "fifo head": (db: Queryable) => backlogHead(db, "keyed"),
      "fifo head without payload": (db: Queryable) => backlogHeadMeta(db, "keyed"),
      // read ahead behind a head in the middle of the backlog (the delivery held by the worker)
      "fifo payload after the head": (db: Queryable) =>
        backlogPayloadAfter(db, "keyed", Math.max(0, ...(skip.get("keyed") ?? [0]))),
      "due, idle subscription": (db: Queryable) => dueDeliveries(db, "idle", "none", now(), LIMIT, [], LEASE),
      "nextDueAt, idle subscription": (db: Queryable) => nextDueAt(db, "idle", now()),
    };
  };
  /** What a busy worker holds in flight (and so skips): the first 2 × LIMIT it may start. */
  const inFlight = async (db: Queryable) => {
    const held = async (sub: string, o: "key" | "none") =>
      (await dueDeliveries(db, sub, o, new Date(), 2 * LIMIT, [], LEASE)).map((r) => Number(r.id));
    return new Map([
      ["keyed", await held("keyed", "key")],
      ["plain", await held("plain", "none")],
    ]);
  };
  const expectBounded = async (state: string) => {
    const db = t.db;
    const found: Record<string, string[]> = {};
    const session = await explainingSession(t.url!);
    try {
      for (const [name, call] of Object.entries(queries(await inFlight(db)))) {
        // the due reads by the session (their plan is inside a function), the others by EXPLAIN
        const plans = name.startsWith("due") ? await session.plansOf(call) : await plansOf(db, call);
        if (name.startsWith("due")) expect(plans.length, name).toBeGreaterThan(1);
        const bad = unbounded(plans);
        if (bad.length) found[`${state}: ${name}`] = bad;
      }
    } finally {
      await session.close();
    }
    expect(found).toEqual({});
  };

  beforeAll(async () => {
    t = await createTestDb("postgres");
    await t.db.query(
      "insert into stock_sync.subscriptions (name, lease_owner, lease_until) select n, $2, $3::timestamptz + interval '1 hour' from unnest($1::text[]) n",
      [["keyed", "plain", "idle"], LEASE.owner, LEASE.until],
    );
    await buildOutage(t.db, OUTAGE);
    await t.db.query("vacuum analyze");
  }, 120_000);
  afterAll(async () => {
    await t?.drop(failed);
  });

  it("during an outage (every retry in the future, `key` rows blocked behind their head)", async () => {
    try {
      await expectBounded("outage");
    } catch (err) {
      failed = true;
      throw err;
    }
  });

  it("once every retry is due", async () => {
    try {
      for (const sub of ["keyed", "plain"]) await dueNow(t.db, sub);
      await t.db.query("analyze stock_sync.deliveries");
      await expectBounded("due");
      // and they do fetch: a full batch each (the checks pass, the plans were not short-cut)
      const now = new Date();
      expect((await dueDeliveries(t.db, "keyed", "key", now, LIMIT, [], LEASE)).length).toBe(LIMIT);
      expect((await dueDeliveries(t.db, "plain", "none", now, LIMIT, [], LEASE)).length).toBe(LIMIT);
    } catch (err) {
      failed = true;
      throw err;
    }
  });
});

(pgSkip ? describe.skip : describe)("the backlog read planned on an empty outbox [postgres]", () => {
  let t: TestDb & { drop(keep?: boolean): Promise<void> };
  afterAll(async () => {
    await t?.drop();
  });

  it("stays bounded once the outbox fills (its plan is kept until the tables are analysed)", async () => {
    // A process that starts on an empty outbox makes the read's plan then, and keeps it: if the
    // plan were sized to those tables (a sequential scan of nothing), every read of a backlog
    // that came later would walk the whole table until the next ANALYZE.
    t = await createTestDb("postgres");
    await t.db.query(
      "insert into stock_sync.subscriptions (name, lease_owner, lease_until) select n, $2, $3::timestamptz + interval '1 hour' from unnest($1::text[]) n",
      [["keyed", "plain"], LEASE.owner, LEASE.until],
    );
    await t.db.query("vacuum analyze");
    const session = await explainingSession(t.url!);
    try {
      const read = (sub: string, o: "key" | "none") => (db: Queryable) =>
        dueDeliveries(db, sub, o, new Date(), LIMIT, [], LEASE);
      // planned now, on empty tables
      await session.plansOf(read("keyed", "key"));
      await session.plansOf(read("plain", "none"));
      await buildOutage(t.db, OUTAGE);
      for (const sub of ["keyed", "plain"]) await dueNow(t.db, sub);
      const found: Record<string, string[]> = {};
      for (const [name, call] of Object.entries({ key: read("keyed", "key"), none: read("plain", "none") })) {
        const bad = unbounded(await session.plansOf(call));
        if (bad.length) found[name] = bad;
      }
      expect(found).toEqual({});
      expect((await read("keyed", "key")(session.db)) as unknown[]).toHaveLength(LIMIT);
      expect((await read("plain", "none")(session.db)) as unknown[]).toHaveLength(LIMIT);
    } finally {
      await session.close();
    }
  }, 120_000);
});
