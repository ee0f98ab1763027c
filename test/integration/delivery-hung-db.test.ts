import { expect, inject, it } from "vitest";
import { openPostgres } from "../../src/db/pg.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { startFreezeProxy } from "../helpers/freeze-proxy.js";

const { cleanup, receiver } = useCleanup();

describeEachDb("a connection hung in the network", (t) => {
  it.skipIf(!inject("pgTemplate"))(
    "a worker stuck on a hung query lets its lease expire, and another process delivers",
    async () => {
      if (t().backend !== "postgres") return; // the hang is a TCP connection's
      const r = await receiver();
      const yaml = `delivery:\n  lease: 3s\n  poll_interval: 0.2s\nsubscriptions:\n  - name: hung\n    subjects: ["order.*"]\n    url: "${r.url}"\n    timeout: 1s\n`;
      const proxy = await startFreezeProxy(t().url!);
      const viaProxy = openPostgres(proxy.url, { poolSize: 4 });
      // cleanup runs newest first: the proxy's sockets go before the pool that waits on them
      cleanup.push(() => viaProxy.close());
      const a = await startEngine(viaProxy, testConfig(yaml));
      cleanup.push(() => a.stop());
      cleanup.push(() => proxy.close());
      expect(a.engine.owned()).toEqual(["hung"]);
      const b = await startEngine(t().db, testConfig(yaml));
      cleanup.push(() => b.stop());
      expect(b.engine.owned()).toEqual([]);
      // The next read of the backlog by the first process hangs; its lease renewals go through
      // other connections and still work. Before the fix they kept the lease alive for ever.
      // the backlog fetch (dueForSubscriptions), by its prepared statement's name: sent with every
      // execution (the text only with the first on a connection)
      proxy.freezeOn("stock_sync_due");
      await b.enqueue({ subject: "order.created", payload: "{}" });
      a.engine.wake(["hung"]);
      await waitUntil(async () => proxy.frozen() === 1, 5000, "the hung read");
      await waitUntil(async () => b.engine.owned().length === 1, 20_000, "the takeover");
      await r.waitFor(1, 10_000);
    },
  );

  it.skipIf(!inject("pgTemplate"))(
    "every query has a bound: a hung one fails as 'unavailable', its connection is dropped, the next works",
    async () => {
      if (t().backend !== "postgres") return;
      const proxy = await startFreezeProxy(t().url!);
      const db = openPostgres(proxy.url, { poolSize: 1, queryTimeoutMs: 500 });
      cleanup.push(() => db.close());
      cleanup.push(() => proxy.close());
      proxy.freezeOn("select 'hang me'");
      await expect(db.query("select 'hang me'")).rejects.toMatchObject({ code: "DATABASE_UNAVAILABLE" });
      // the pool's only connection was the hung one: without dropping it this would queue for ever
      const { rows } = await db.query<{ ok: number }>("select 1 as ok");
      expect(rows).toEqual([{ ok: 1 }]);
      await expect(db.tx((tx) => tx.query("select 'hang me', 2"))).resolves.toBeDefined();
      proxy.freezeOn("select 'hang me', 3");
      await expect(db.tx((tx) => tx.query("select 'hang me', 3"))).rejects.toThrow();
      expect((await db.query<{ ok: number }>("select 1 as ok")).rows).toEqual([{ ok: 1 }]);
    },
  );
});
