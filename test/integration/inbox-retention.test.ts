import { expect, it } from "vitest";
import type { Received } from "../../src/inbound/batch.js";
import { createIntake } from "../../src/inbound/intake.js";
import { purgeDelivered } from "../../src/outbox/retention.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { describeEachDb } from "../helpers/db.js";
import { quietLog, testConfig } from "../helpers/engine.js";

const DAY = 86_400_000;
const subscriptions = buildSubscriptions(
  testConfig(
    `subscriptions:\n  - name: orders\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n    status: paused\n`,
  ),
);

const received = (id: string, now: Date): Received => ({
  event: { id, subject: "order.created", orderId: `O-${id}` },
  payload: { body: Buffer.from(JSON.stringify({ id, type: "created" })), contentType: "application/json" },
  now,
});

describeEachDb("inbox retention", (t) => {
  it("keeps an event id while any of its messages is kept: a very late duplicate is a duplicate", async () => {
    const { db } = t();
    const intake = createIntake({ db, log: quietLog, subscriptions });
    const long = new Date(Date.now() - 10 * DAY);
    expect((await intake.intake(received("late-1", long))).duplicate).toBe(false);
    // the message is old, and still owed (its subscription is paused): it is kept, so is its id
    await db.query("update stock_sync.messages set created_at = $1 where id = 'evt_late-1'", [long]);
    await purgeDelivered(db, new Date(), DAY);
    const again = await intake.intake(received("late-1", new Date()));
    expect(again).toMatchObject({ duplicate: true, messageId: "evt_late-1" });
    const { rows } = await db.query(
      "select count(*)::int as n from stock_sync.deliveries where message_id = 'evt_late-1'",
    );
    expect(rows[0]).toEqual({ n: 1 });
  });

  it("forgets the id once its messages are purged", async () => {
    const { db } = t();
    const intake = createIntake({ db, log: quietLog, subscriptions });
    const long = new Date(Date.now() - 10 * DAY);
    await intake.intake(received("old-1", long));
    await db.query(
      "update stock_sync.deliveries set status = 'delivered', updated_at = $1 where message_id = 'evt_old-1'",
      [long],
    );
    await db.query("update stock_sync.messages set created_at = $1 where id = 'evt_old-1'", [long]);
    await purgeDelivered(db, new Date(), DAY);
    const { rows } = await db.query("select count(*)::int as n from stock_sync.inbox where id = 'old-1'");
    expect(rows[0]).toEqual({ n: 0 });
  });
});
