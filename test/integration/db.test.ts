import { PGlite } from "@electric-sql/pglite";
import { describe, expect, it } from "vitest";
import { migrate, migrationsPending } from "../../src/db/migrate.js";
import { openPostgres } from "../../src/db/pg.js";
import { pgliteDb } from "../../src/db/pglite.js";
import { SessionLock } from "../../src/db/session-lock.js";
import { describeEachDb } from "../helpers/db.js";
import { quoteIdent, urlFor, withAdmin } from "../helpers/pg-admin.js";
import { inject } from "vitest";

describeEachDb("state database", (t) => {
  it("runs parameterised queries and returns int8 as numbers", async () => {
    const { rows } = await t().db.query<{ n: number; s: string }>("select $1::int8 as n, $2::text as s", [
      42,
      "x",
    ]);
    expect(rows).toEqual([{ n: 42, s: "x" }]);
  });

  it("runs a named (prepared) statement again and again, from several connections at once", async () => {
    const { db } = t();
    // more calls than PostgreSQL's five custom plans, in parallel so the pool opens several connections
    const calls = Array.from({ length: 12 }, (_, i) =>
      db.query<{ n: number }>("select $1::int8 * 2 as n", [i], { name: "db_test_named" }),
    );
    expect((await Promise.all(calls)).map((r) => r.rows[0]!.n)).toEqual(
      Array.from({ length: 12 }, (_, i) => i * 2),
    );
    await db.tx(async (tx) => {
      const { rows } = await tx.query<{ n: number }>("select $1::int8 * 2 as n", [21], {
        name: "db_test_named",
      });
      expect(rows).toEqual([{ n: 42 }]);
    });
  });

  it("runs several statements in one parameterless query", async () => {
    const { rows } = await t().db.query<{ b: number }>(
      "create temp table if not exists m(a int); select 2 as b",
    );
    expect(rows).toEqual([{ b: 2 }]);
  });

  it("commits a transaction that resolves and rolls back one that throws", async () => {
    const { db } = t();
    await db.query("create table tx_probe (id int primary key)");
    await db.tx(async (tx) => {
      await tx.query("insert into tx_probe values (1)");
    });
    await expect(
      db.tx(async (tx) => {
        await tx.query("insert into tx_probe values (2)");
        throw new Error("boom");
      }),
    ).rejects.toThrow("boom");
    const { rows } = await db.query<{ id: number }>("select id from tx_probe order by id");
    expect(rows.map((r) => r.id)).toEqual([1]);
  });

  it("streams rows in batches inside a transaction", async () => {
    let count = 0;
    let last = 0;
    await t().db.tx(async (tx) => {
      for await (const row of tx.stream<{ g: number }>(
        "select g from generate_series(1, $1::int) g",
        [12_345],
        1000,
      )) {
        count++;
        last = row.g;
      }
    });
    expect({ count, last }).toEqual({ count: 12_345, last: 12_345 });
  });

  it("copyFrom loads CSV in a transaction: header skipped, quoted values kept, empty fields as ''", async () => {
    const loaded = await t().db.tx(async (tx) => {
      await tx.query('create temp table copy_probe (a text, "B c" text, n int8) on commit drop');
      const csv = ['a,"B c",n\n', 'x,"say ""hi"", then\nbye",1\n', ",pipe|,-2\n", '"",ü,3\n'];
      const n = await tx.copyFrom("copy_probe", ["a", "B c", "n"], toChunks(csv.join("")));
      const { rows } = await tx.query('select a, "B c" as b, n from copy_probe order by n');
      return { n, rows };
    });
    expect(loaded).toEqual({
      n: 3,
      rows: [
        { a: "", b: "pipe|", n: -2 },
        { a: "x", b: 'say "hi", then\nbye', n: 1 },
        { a: "", b: "ü", n: 3 },
      ],
    });
  });

  it("gives a repeatable-read transaction one snapshot", async () => {
    const { db } = t();
    await db.query("create table rr_probe (v int); insert into rr_probe values (1)");
    const seen = await db.tx(
      async (tx) => {
        const first = (await tx.query<{ v: number }>("select v from rr_probe")).rows[0]?.v;
        const second = (await tx.query<{ v: number }>("select v from rr_probe")).rows[0]?.v;
        return [first, second];
      },
      { isolation: "repeatable read", readOnly: true },
    );
    expect(seen).toEqual([1, 1]);
    await expect(
      db.tx((tx) => tx.query("insert into rr_probe values (2)"), { readOnly: true }),
    ).rejects.toThrow(/read-only/);
  });

  it("has every shipped migration applied, and migrating again does nothing", async () => {
    const { db } = t();
    expect(await migrationsPending(db)).toBe(0);
    expect((await migrate(db)).applied).toEqual([]);
  });
});

/** The text cut into 7-byte chunks, so rows and characters are split across chunks. */
async function* toChunks(text: string): AsyncIterable<Buffer> {
  const bytes = Buffer.from(text);
  for (let i = 0; i < bytes.length; i += 7) yield bytes.subarray(i, i + 7);
}

describe("concurrent migrators", () => {
  it("two PGlite users migrating at once apply each migration once", async () => {
    const pg = await PGlite.create();
    const db = pgliteDb(pg, new SessionLock(), () => pg.close());
    const [a, b] = await Promise.all([migrate(db), migrate(db)]);
    expect([...a.applied, ...b.applied].sort()).toEqual(a.applied.length ? a.applied : b.applied);
    expect(await migrationsPending(db)).toBe(0);
    await db.close();
  });

  it.skipIf(!inject("pgTemplate"))(
    "two PostgreSQL processes migrating an empty database at once",
    async () => {
      const name = `t_mig_${process.pid}_${Date.now()}`;
      await withAdmin((c) => c.query(`create database ${quoteIdent(name)}`));
      const pools = [openPostgres(urlFor(name)), openPostgres(urlFor(name)), openPostgres(urlFor(name))];
      try {
        const results = await Promise.all(pools.map((p) => migrate(p)));
        const applied = results.flatMap((r) => r.applied);
        expect(new Set(applied).size).toBe(applied.length); // nothing applied twice
        expect(await migrationsPending(pools[0]!)).toBe(0);
      } finally {
        await Promise.all(pools.map((p) => p.close()));
        await withAdmin((c) => c.query(`drop database ${quoteIdent(name)} with (force)`));
      }
    },
  );
});
