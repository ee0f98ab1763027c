import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterEach, describe, expect, it } from "vitest";
import { runCleanup } from "../helpers/cleanup.js";
import { migratedDataDir } from "../helpers/data-dir.js";
import type { Db } from "../../src/db/db.js";
import { openEmbedded } from "../../src/db/embedded.js";
import { openPostgres } from "../../src/db/pg.js";

const opened: { close(): Promise<void> }[] = [];
const dirs: string[] = [];

async function tempDir() {
  const dir = await mkdtemp(join(tmpdir(), "stock-sync-embedded-"));
  dirs.push(dir);
  return dir;
}

/**
 * A data directory whose database already exists (a copy of the migrated template): for the
 * tests about sharing it, not about creating it, which costs PGlite 4-11 s of initdb each. The
 * last test here still opens an empty directory.
 */
const createdDir = async () => migratedDataDir(await tempDir());

function track<T extends { close(): Promise<void> }>(x: T): T {
  opened.push(x);
  return x;
}

afterEach(async () => {
  // A database that is already closed (the test closed it) may refuse a second close: ignored.
  await runCleanup([
    ...dirs.splice(0).map((d) => () => rm(d, { recursive: true, force: true })),
    ...opened.splice(0).map((x) => () => x.close().catch(() => undefined)),
  ]);
});

describe("embedded database (PGlite shared over the wire)", () => {
  it("the first opener owns it; a second opener connects to the owner", async () => {
    const dir = await createdDir();
    const owner = track(await openEmbedded(dir));
    const client = track(await openEmbedded(dir));
    expect([owner.role, client.role]).toEqual(["owner", "client"]);
    await owner.query("create table shared (v text)");
    await client.query("insert into shared values ($1)", ["from client"]);
    expect((await owner.query("select v from shared")).rows).toEqual([{ v: "from client" }]);
    expect(JSON.parse(await readFile(join(dir, "endpoint.json"), "utf8")).socketDir).toBe(dir);
  });

  it("never interleaves transactions or extended-protocol batches of different users", async () => {
    const dir = await createdDir();
    const owner = track(await openEmbedded(dir));
    const url = owner.url;
    const users: Db[] = [
      owner,
      track(openPostgres(url, { poolSize: 3 })),
      track(openPostgres(url, { poolSize: 3 })),
    ];
    await owner.query(
      "create table counter (id int primary key, n int not null); insert into counter values (1, 0)",
    );
    const jobs: Promise<unknown>[] = [];
    for (let i = 0; i < 90; i++) {
      const db = users[i % users.length]!;
      // Read-modify-write: only correct if no one else runs inside this transaction.
      jobs.push(
        db.tx(async (tx) => {
          const { rows } = await tx.query<{ n: number }>("select n from counter where id = $1", [1]);
          await tx.query("update counter set n = $1 where id = $2", [rows[0]!.n + 1, 1]);
        }),
      );
      jobs.push(
        db.query<{ x: number }>("select $1::int as x", [i]).then(({ rows }) => expect(rows[0]!.x).toBe(i)),
      );
    }
    await Promise.all(jobs);
    expect((await owner.query("select n from counter")).rows).toEqual([{ n: 90 }]);
  });

  it("a client loads CSV with copyFrom (as inserts: PGlite takes no COPY FROM STDIN over the wire)", async () => {
    const dir = await createdDir();
    const owner = track(await openEmbedded(dir));
    const client = track(await openEmbedded(dir));
    const rows = Array.from({ length: 12_001 }, (_, i) => `k${i},"v,${i}",${i}\n`);
    const n = await client.tx(async (tx) => {
      await tx.query("create table copied (k text, v text, n int)");
      return tx.copyFrom("copied", ["k", "v", "n"], [Buffer.from(`k,v,n\n${rows.join("")}`)]);
    });
    expect(n).toBe(12_001);
    const { rows: check } = await owner.query<{ c: number; s: number; v: string }>(
      "select count(*)::int as c, sum(n)::int as s, max(v) filter (where k = 'k7') as v from copied",
    );
    expect(check).toEqual([{ c: 12_001, s: (12_000 * 12_001) / 2, v: "v,7" }]);
  });

  it("rolls back the open transaction of a client that disconnects", async () => {
    const dir = await createdDir();
    const owner = track(await openEmbedded(dir));
    await owner.query("create table t (v int)");
    const client = new pg.Client(owner.url);
    client.on("error", () => undefined);
    await client.connect();
    await client.query("begin");
    await client.query("insert into t values (1)");
    // The process dies mid-transaction: its socket closes without COMMIT or Terminate.
    (client as unknown as { connection: { stream: Socket } }).connection.stream.destroy();
    expect((await owner.query("select count(*)::int as n from t")).rows).toEqual([{ n: 0 }]);
    await owner.query("insert into t values (2)");
    expect((await owner.query("select count(*)::int as n from t")).rows).toEqual([{ n: 1 }]);
  });

  it("persists across close and reopen, and takes over a lock left by a dead process", async () => {
    const dir = await tempDir();
    const first = await openEmbedded(dir);
    await first.query("create table kept (v int); insert into kept values (7)");
    await first.close();
    await writeFile(join(dir, "owner.lock"), "999999"); // a pid that does not run
    const second = track(await openEmbedded(dir));
    expect(second.role).toBe("owner");
    expect((await second.query("select v from kept")).rows).toEqual([{ v: 7 }]);
  });
});
