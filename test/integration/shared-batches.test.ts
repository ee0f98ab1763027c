/**
 * The engine's shared reads (src/outbox/batches.ts) against a real database: what a worker's
 * read of its backlog costs while its subscription is paused.
 */
import { expect, it } from "vitest";
import { fixedClock } from "../../src/clock.js";
import { createSharedBatches } from "../../src/outbox/batches.js";
import { enqueue } from "../../src/outbox/enqueue.js";
import { newOwnerId } from "../../src/outbox/owners.js";
import { acquireLeases, syncSubscriptions } from "../../src/outbox/queries.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { describeEachDb } from "../helpers/db.js";
import { quietLog, subscriptionYaml, testConfig } from "../helpers/engine.js";
import { spyDb } from "../helpers/spy-db.js";

/** The worker's read of its backlog (queries.ts dueForSubscriptions). */
const isDueRead = (text: string) => text.includes("stock_sync.due_deliveries(");
/** The status read alone (queries.ts subscriptionStatuses). */
const isStatusRead = (text: string) => text.startsWith("select name, status from stock_sync.subscriptions");

describeEachDb("shared batches", (t) => {
  it("a subscription last read as paused: a wake reads its status alone, and the backlog again once it is enabled", async () => {
    const name = "paused_wake";
    const subs = buildSubscriptions(
      testConfig(
        `subscriptions:\n${subscriptionYaml(name, "http://127.0.0.1:9/unused", "    status: paused\n")}`,
      ),
    );
    await syncSubscriptions(
      t().db,
      subs.map((s) => ({ name: s.name, status: s.status })),
    );
    const owner = newOwnerId();
    await acquireLeases(t().db, {
      owner,
      renew: [],
      candidates: [name],
      take: 1,
      leaseMs: 600_000,
      deadOwners: [],
    });
    await t().db.tx((tx) =>
      enqueue(tx, subs, { subject: "order.created", payload: "{}", contentType: "application/json" }),
    );
    const reads: string[] = [];
    const db = spyDb(t().db, {
      before: (text) => {
        if (isDueRead(text)) reads.push("due");
        if (isStatusRead(text)) reads.push("status");
        return undefined;
      },
    });
    const clock = fixedClock(new Date(Date.now() + 60_000));
    const batches = createSharedBatches({
      db,
      clock,
      log: quietLog,
      random: () => 0.5,
      owner,
      all: subs,
      notifyMinIntervalMs: 0,
    });
    const ask = () => batches.due({ subscription: name, ordering: "none", limit: 10, skip: [], forMs: 1000 });

    // unknown yet: the whole read, which finds it paused
    expect(await ask()).toMatchObject({ status: "paused", rows: [] });
    expect(reads).toEqual(["due"]);
    // woken again (every intake batch's notify does): still paused, read from its status alone
    expect(await ask()).toMatchObject({ status: "paused", rows: [] });
    expect(await ask()).toMatchObject({ status: "paused", rows: [] });
    expect(reads).toEqual(["due", "status", "status"]);

    // resumed: the wake that follows reads the backlog, and finds the message
    await t().db.query("update stock_sync.subscriptions set status = 'enabled' where name = $1", [name]);
    const resumed = await ask();
    expect(resumed.status).toBe("enabled");
    expect(resumed.rows).toHaveLength(1);
    expect(reads).toEqual(["due", "status", "status", "status", "due"]);
    // and while it stays enabled, one read per wake, as before
    await ask();
    expect(reads.slice(5)).toEqual(["due"]);
  });
});
