import { beforeAll, expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { describeEachDb } from "../helpers/db.js";
import { STOCK_SUB, stockFixture, stockMessages } from "../helpers/stock.js";

// Issue 17.2: the shrink guard refused the full, then the next delta sent the zeros.
const YAML = `${STOCK_SUB}  - name: ops
    subjects: ["ops.*"]
    url: "file:///dev/null/unused"
`;

describeEachDb("the shrink guard also guards deltas", (t) => {
  let fx: Awaited<ReturnType<typeof stockFixture>>;
  const db = () => t().db;
  const delta = (force = false) => fx.exporter.run("delta", { trigger: "test", force });
  const zeros = async () =>
    (await stockMessages(db()))
      .filter((m) => m.kind === "delta")
      .flatMap((m) => m.rows)
      .filter((r) => r.quantity === 0).length;
  const refusals = async (d: Db) =>
    Number(
      (
        await d.query<{ n: string }>(
          "select count(*) as n from stock_sync.messages where subject = 'ops.snapshot.refused'",
        )
      ).rows[0]!.n,
    );

  beforeAll(async () => {
    fx = await stockFixture(db(), YAML);
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    // The OMS has the full: the guard's reference.
    await db().query("update stock_sync.deliveries set status = 'delivered', delivered_at = now()");
    await db().query("create table removed as select * from inventory.stock_on_hand where false");
  });

  it("a delta zeroing 39% of the keys is refused, notified and held; --force sends it", async () => {
    await db().query(
      `with gone as (delete from inventory.stock_on_hand
                     where (hashtext(sku || location) & 1023) < 400 returning *)
       insert into removed select * from gone`,
    );
    const first = await delta();
    expect(first.status).toBe("refused");
    expect(first.detail).toMatch(/stock\.guard\.max_drop_ratio/);
    expect(await zeros()).toBe(0);
    expect(await refusals(db())).toBe(1);
    // Held: the next scheduled delta is refused again, and still nothing reaches the OMS.
    expect((await delta()).status).toBe("refused");
    expect(await zeros()).toBe(0);
    const runs = await db().query<{ status: string }>(
      "select status from stock_sync.stock_runs where kind = 'delta' order by id",
    );
    expect(runs.rows.map((r) => r.status)).toEqual(["refused", "refused"]);

    const forced = await delta(true);
    expect(forced.status).toBe("enqueued");
    expect(await zeros()).toBeGreaterThan(200);
  });

  it("the source recovering releases the held delta with nothing zeroed", async () => {
    await db().query("update stock_sync.deliveries set status = 'delivered', delivered_at = now()");
    // A full (forced) after the drop, delivered, then the rows come back and go again partly.
    expect((await fx.exporter.run("full", { trigger: "test", force: true })).status).toBe("enqueued");
    await db().query("update stock_sync.deliveries set status = 'delivered', delivered_at = now()");
    await db().query("insert into inventory.stock_on_hand select * from removed");
    expect((await delta()).status).toBe("enqueued");
    const before = await zeros();
    await db().query("delete from inventory.stock_on_hand where (hashtext(sku || location) & 1023) < 400");
    expect((await delta()).status).toBe("refused");
    await db().query("insert into inventory.stock_on_hand select * from removed on conflict do nothing");
    expect((await delta()).status).toBe("empty");
    expect(await zeros()).toBe(before);
  });

  it("a full that would zero as many keys (rows kept, quantities 0) is refused the same way", async () => {
    expect((await fx.exporter.run("full", { trigger: "test", force: true })).status).toBe("enqueued");
    await db().query("update stock_sync.deliveries set status = 'delivered', delivered_at = now()");
    const fulls = async () =>
      Number(
        (
          await db().query<{ n: string }>(
            "select count(*) as n from stock_sync.stock_runs where kind = 'full' and status = 'enqueued'",
          )
        ).rows[0]!.n,
      );
    const before = await fulls();
    // A load that left the quantities at 0: the row count does not move.
    await db().query(
      "update inventory.stock_on_hand set quantity = 0 where (hashtext(sku || location) & 1023) < 400",
    );
    const full = await fx.exporter.run("full", { trigger: "test" });
    expect(full.status).toBe("refused");
    expect(full.detail).toMatch(/^it would zero \d+ keys, .* of the \d+ rows of the last delivered full/);
    expect(await fulls()).toBe(before);
    const sentZeros = await db().query<{ n: string }>(
      "select count(*) as n from stock_sync.stock_sent where quantity = 0",
    );
    expect((await delta()).status).toBe("refused");
    expect(
      (await db().query<{ n: string }>("select count(*) as n from stock_sync.stock_sent where quantity = 0"))
        .rows,
    ).toEqual(sentZeros.rows);
    expect((await fx.exporter.run("full", { trigger: "test", force: true })).status).toBe("enqueued");
  });
});

// The same measure where a delta compares every key (full_diff, delta-compare.ts): keys gone
// from the source and keys read at 0 both count.
describeEachDb("the shrink guard on deltas comparing every key", (t) => {
  const db = () => t().db;

  it("refuses a delta that zeroes too many keys, whether they are gone or read at 0", async () => {
    const fx = await stockFixture(db(), `${YAML}stock:\n  capture: { mode: full_diff }\n`);
    const delta = (force = false) => fx.exporter.run("delta", { trigger: "test", force });
    expect((await fx.exporter.run("full", { trigger: "test" })).status).toBe("enqueued");
    await db().query("update stock_sync.deliveries set status = 'delivered', delivered_at = now()");
    await db().query(
      "create table kept_back as select * from inventory.stock_on_hand where (hashtext(sku || location) & 1023) < 200",
    );
    await db().query("delete from inventory.stock_on_hand where (hashtext(sku || location) & 1023) < 200");
    await db().query(
      "update inventory.stock_on_hand set quantity = 0 where (hashtext(sku || location) & 1023) between 200 and 399",
    );
    const refused = await delta();
    expect(refused.status).toBe("refused");
    expect(refused.detail).toMatch(/^it would zero \d+ keys/);
    // Half of it (the rows back, the zeros kept) is within the ratio and goes out.
    await db().query("insert into inventory.stock_on_hand select * from kept_back");
    expect((await delta()).status).toBe("enqueued");
  });
});
