import { spawn } from "node:child_process";
import { hostname } from "node:os";
import { beforeEach, expect, inject, it } from "vitest";
import { newOwnerId } from "../../src/outbox/owners.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngineProcess } from "../helpers/engine-process.js";
import { startEngine, type TestEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { gate, spyDb } from "../helpers/spy-db.js";

const { cleanup, receiver } = useCleanup();

const yaml = (url: string, lease = "30s") => `delivery:
  lease: ${lease}
  poll_interval: 0.1s
subscriptions:
  - name: s
    subjects: ["order.*"]
    url: "${url}"
    timeout: 2s
`;

const leaseOwner = async (db: import("../../src/db/db.js").Db) =>
  (
    await db.query<{ o: string | null }>(
      "select lease_owner as o from stock_sync.subscriptions where name = 's'",
    )
  ).rows[0]?.o;

describeEachDb("delivery leases", (t) => {
  beforeEach(async () => {
    // one database per file: what an earlier test left (leases, ghosts) must not steer this one
    await t().db.query("update stock_sync.subscriptions set lease_owner = null, lease_until = null");
    await t().db.query("delete from stock_sync.engines");
  });

  async function engine(config: string, extra: Parameters<typeof startEngine>[2] = {}): Promise<TestEngine> {
    const e = await startEngine(t().db, testConfig(config), extra);
    cleanup.push(() => e.stop());
    return e;
  }

  it("lease expiry is on the database's clock: a process whose clock is 10 minutes ahead takes nothing", async () => {
    const r = await receiver();
    const a = await engine(yaml(r.url));
    expect(a.engine.owned()).toEqual(["s"]);
    const ahead = { now: () => new Date(Date.now() + 10 * 60_000) };
    const b = await engine(yaml(r.url), { clock: ahead });
    // Before the fix: b compared the lease with its own clock, found it expired, and took it.
    expect(b.engine.owned()).toEqual([]);
    expect(await leaseOwner(t().db)).toBe(a.engine.owner);
  });

  it("a lease of a dead process of this host and PID namespace is taken at once, not after it expires", async () => {
    const r = await receiver();
    const dead = spawn(process.execPath, ["-e", ""]);
    await new Promise((res) => dead.once("exit", res));
    const [, , , scope] = newOwnerId().split(":");
    const ghost = `${hostname()}:${dead.pid}:dead00:${scope}`;
    await t().db.query(
      `insert into stock_sync.subscriptions (name, lease_owner, lease_until) values ('s', $1, now() + interval '1 hour')
       on conflict (name) do update set lease_owner = $1, lease_until = now() + interval '1 hour'`,
      [ghost],
    );
    const a = await engine(yaml(r.url));
    expect(a.engine.owned()).toEqual(["s"]);
  });

  it("an owner of another PID namespace (or an id without one) is never judged dead by its pid", async () => {
    const r = await receiver();
    const dead = spawn(process.execPath, ["-e", ""]);
    await new Promise((res) => dead.once("exit", res));
    for (const other of [
      `${hostname()}:${dead.pid}:beef00:0123456789ab`,
      `${hostname()}:${dead.pid}:beef00`,
    ]) {
      await t().db.query(
        `insert into stock_sync.subscriptions (name, lease_owner, lease_until) values ('s', $1, now() + interval '1 hour')
         on conflict (name) do update set lease_owner = $1, lease_until = now() + interval '1 hour'`,
        [other],
      );
      const a = await engine(yaml(r.url));
      expect(a.engine.owned()).toEqual([]);
      await a.stop();
    }
  });

  it.skipIf(!inject("pgTemplate"))(
    "[real PID namespace] a process started with unshare --pid does not steal a live process's lease",
    async () => {
      if (t().backend !== "postgres") return; // another process needs a server URL
      const r = await receiver();
      const a = await engine(yaml(r.url));
      expect(a.engine.owned()).toEqual(["s"]);
      const other = await startEngineProcess(t().url!, yaml(r.url), [
        "unshare",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
      ]);
      cleanup.push(() => other.stop("SIGKILL"));
      // Before the fix, from inside its namespace our pid did not exist: it took the lease at start.
      expect(other.owner.split(":")[1]).not.toBe(String(process.pid));
      await new Promise((res) => setTimeout(res, 500));
      expect(await leaseOwner(t().db)).toBe(a.engine.owner);
    },
  );

  it("a stolen lease: nothing starts later than the steal's commit + 100 ms, and nothing the old holder sends after it is recorded", async () => {
    // Concurrency 1, a slow receiver: a fetched delivery waits in the queue behind the request
    // in progress, longer than its checks stay fresh; the lease is renewed only every 10 s, so
    // only the database's checks (fetch, last check) can see that the lease moved.
    const SLOW_MS = 700;
    const r = await receiver(() => ({ status: 204, delayMs: SLOW_MS }));
    const fetched: number[] = [];
    const refused: number[] = []; // a last check that let nothing start
    const emptyFetches: number[] = []; // a fetch that found nothing it may send
    const db = spyDb(t().db, {
      after: (text, rows) => {
        // the backlog read (dueForSubscriptions: nothing due is a row with no delivery)
        if (text.includes("stock_sync.due_deliveries(")) {
          const ids = (rows as { id: string | null }[]).filter((row) => row.id !== null);
          fetched.push(...ids.map((row) => Number(row.id)));
          if (ids.length === 0) emptyFetches.push(Date.now());
        }
        if (text.includes("where d.id = any($1::int8[])") && rows.length === 0) refused.push(Date.now());
      },
    });
    const e = await startEngine(
      db,
      testConfig(
        `delivery:\n  lease: 30s\n  poll_interval: 0.2s\nsubscriptions:\n  - name: s\n    subjects: ["order.*"]\n` +
          `    url: "${r.url}"\n    timeout: 2s\n    concurrency: 1\n`,
      ),
    );
    cleanup.push(() => e.stop());
    for (let n = 0; n < 20; n++)
      await e.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    await r.waitFor(2, 10_000);
    await waitUntil(
      async () => fetched.length > r.requests.length,
      10_000,
      "a delivery queued behind the one being sent",
    );
    // as a process that took the lease over would have written it
    await t().db.query(
      `update stock_sync.subscriptions set lease_owner = 'thief:1:x:y', lease_until = now() + interval '1 hour' where name = 's'`,
    );
    const stolenAt = Date.now();
    const MARGIN_MS = 150; // what a loaded machine adds between a check's query and a request's start
    await waitUntil(
      async () =>
        (refused.some((at) => at > stolenAt) && emptyFetches.some((at) => at > stolenAt + SLOW_MS)) ||
        r.requests.some((q) => q.at > stolenAt + 100 + MARGIN_MS),
      15_000,
      "the queued delivery checked and a fetch after the request in progress, or a late request",
    );
    expect(r.requests.filter((q) => q.at > stolenAt + 100 + MARGIN_MS).map((q) => q.body.toString())).toEqual(
      [],
    );
    expect(e.engine.owned()).toEqual(["s"]); // the renewal has not run: the checks alone held
    // the request in flight at the steal: its answer came after, and its outcome was not written
    const { rows } = await t().db.query<{ at: Date }>(
      "select a.attempted_at as at from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id where d.subscription = 's'",
    );
    expect(rows.length).toBeLessThan(r.requests.length);
    expect(await leaseOwner(t().db)).toBe("thief:1:x:y");
  });

  // The receiver tells "sent after the thaw" by arrival time, so a is frozen only while every one
  // of its slots is held open at the receiver: each of its requests has fully arrived, none can be
  // half-written at the freeze and land after the thaw. (Frozen at an arbitrary moment, a request
  // started just before SIGSTOP arrived after SIGCONT in 1 run of 3, and the test read it as sent
  // by a thawed holder.)
  it("lease expiry: a holder frozen (SIGSTOP) loses the subscription when its lease expires, and once thawed sends nothing", async () => {
    if (t().backend !== "postgres") return; // another process needs a server URL
    // it counts subscription s's deliveries: none of an earlier test's may be among them
    await t().db.query("delete from stock_sync.messages");
    const slots = 2;
    // a's first 5 requests are answered, then its requests are held open (they time out at a);
    // b is answered slowly: what a had fetched before it froze is still owed when it thaws
    let answeredA = 0;
    const r = await receiver((q) => {
      if (q.path === "/b") return { status: 204, delayMs: 150 };
      return answeredA++ < 5 ? { status: 204 } : { status: 204, hang: true };
    });
    // the same subscription, each process with its own path: the receiver tells them apart. The
    // timeout (3 s) leaves time to see both slots held before a gives up on them; the lease (10 s)
    // must outlast a whole request for a to send at all
    const config = (path: string) =>
      `delivery:\n  lease: 10s\n  poll_interval: 0.1s\nsubscriptions:\n  - name: s\n    subjects: ["order.*"]\n` +
      `    url: "${r.url}/${path}"\n    timeout: 3s\n    concurrency: ${slots}\n`;
    const fromA = () => r.requests.filter((q) => q.path === "/a");
    const heldByA = () => fromA().filter((q, i) => i >= 5 && q.endedAt === undefined);
    const a = await startEngineProcess(t().url!, config("a"));
    cleanup.push(() => a.stop("SIGKILL"));
    const b = await startEngine(t().db, testConfig(config("b")), { start: false });
    cleanup.push(() => b.stop());
    expect(await leaseOwner(t().db)).toBe(a.owner);
    for (let n = 0; n < 30; n++)
      await b.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    await waitUntil(
      async () => heldByA().length === slots,
      15_000,
      "every slot of a held open at the receiver",
    );
    a.child.kill("SIGSTOP"); // alive (its pid exists) but renewing nothing
    const held = heldByA();
    // a slot that a gave up on between the check and the freeze could have started a request
    expect(held.length, "a freed a slot just before the freeze; the test cannot tell what follows").toBe(
      slots,
    );
    await b.engine.start();
    expect(b.engine.owned()).toEqual([]); // a live holder's lease is not taken before it expires
    await waitUntil(async () => b.engine.owned().includes("s"), 30_000, "the lease taken after its expiry");
    const seen = async () =>
      (
        await t().db.query<{ at: Date }>("select seen_at as at from stock_sync.engines where owner = $1", [
          a.owner,
        ])
      ).rows[0]?.at.getTime();
    const seenBefore = await seen();
    a.child.kill("SIGCONT");
    // more work, announced to both processes
    for (let n = 30; n < 40; n++)
      await b.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    await waitUntil(
      async () => {
        const { rows } = await t().db.query<{ n: number }>(
          "select count(*)::int as n from stock_sync.deliveries where subscription = 's' and status = 'delivered'",
        );
        return rows[0]!.n === 40 && ((await seen()) ?? 0) > (seenBefore ?? 0);
      },
      60_000,
      "all delivered, and the thawed process renewing again",
    );
    // nothing reached the receiver from a but what it had sent before the freeze
    expect(fromA().length).toBe(5 + slots);
    expect(held.every((q) => q.endedAt !== undefined)).toBe(true); // the held requests given up at a
    expect(await leaseOwner(t().db)).toBe(b.engine.owner);
  }, 150_000); // bounded wait by wait (15 + 30 + 60 s): a loaded machine needs more than the default

  it("a worker stalled on a read loses its lease, and a process alone takes the subscription back once it has stopped", async () => {
    // bench spread (one process, 20 subscriptions): a read of the backlog slower than half a lease
    // (a busy database) let the lease expire, the worker was dropped, and as this process never
    // took a lease of its own back, nobody sent for the subscription again.
    const r = await receiver();
    const held = gate();
    let holding = false;
    let heldReads = 0;
    const db = spyDb(t().db, {
      before: (text) => {
        if (!holding || !text.includes("stock_sync.due_deliveries(")) return undefined;
        holding = false;
        heldReads++;
        return held.promise;
      },
    });
    const e = await startEngine(db, testConfig(yaml(r.url, "3s")));
    cleanup.push(() => e.stop());
    expect(e.engine.owned()).toEqual(["s"]);
    holding = true;
    await e.enqueue({ subject: "order.created", payload: JSON.stringify({ n: 1 }) });
    await waitUntil(async () => heldReads === 1, 10_000, "the read held");
    // stalled for half a lease (1.5 s): its lease is not renewed, and the worker is dropped
    await waitUntil(async () => e.engine.owned().length === 0, 15_000, "the stalled worker dropped");
    held.open();
    await waitUntil(async () => e.engine.owned().length === 1, 15_000, "the subscription taken back");
    await r.waitFor(1, 15_000);
    expect(await leaseOwner(t().db)).toBe(e.engine.owner);
  }, 60_000);

  it("the subscriptions are shared among live processes, and handed back when one stops", async () => {
    const r = await receiver();
    const subs = Array.from(
      { length: 6 },
      (_, i) => `  - name: s${i}\n    subjects: ["order.*"]\n    url: "${r.url}/s${i}"\n    timeout: 1s\n`,
    ).join("");
    const config = `delivery:\n  lease: 3s\n  poll_interval: 0.1s\n  shutdown_grace: 0.2s\nsubscriptions:\n${subs}`;
    const a = await engine(config);
    expect(a.engine.owned()).toHaveLength(6);
    const b = await engine(config);
    // a sheds down to its share at its next renewal (lease/3), b takes the rest at its own
    await waitUntil(
      async () => a.engine.owned().length === 3 && b.engine.owned().length === 3,
      15_000,
      "three each",
    );
    const owners = new Set(
      (
        await t().db.query<{ o: string }>(
          "select lease_owner as o from stock_sync.subscriptions where name like 's_'",
        )
      ).rows.map((x) => x.o),
    );
    expect(owners).toEqual(new Set([a.engine.owner, b.engine.owner]));
    await b.stop();
    await waitUntil(async () => a.engine.owned().length === 6, 15_000, "all six back");
    // and everything enqueued meanwhile is delivered
    for (let n = 0; n < 12; n++)
      await a.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    await r.waitFor(12 * 6, 60_000).catch((err) => {
      const per = new Map<string, number>();
      for (const q of r.requests) per.set(q.path, (per.get(q.path) ?? 0) + 1);
      throw new Error(`${err.message}: ${JSON.stringify([...per])} owned ${a.engine.owned()}`);
    });
  }, 60_000);
});
