import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { openPostgres } from "../../src/db/pg.js";
import { insertBacklog } from "../helpers/backlog.js";
import { runCleanup } from "../helpers/cleanup.js";
import { startCli } from "../helpers/cli.js";
import { waitUntil } from "../helpers/engine.js";
import { crashStateDb } from "../helpers/engine-process.js";
import { startWatchReceiver, type Visit, type WatchReceiver } from "../helpers/watch-receiver.js";

/** The lease is the default 60 s: a takeover that waited for its expiry would take longer. */
const TAKEOVER_MS = 20_000;
/** Fewer keys than the keyed subscription's concurrency: a batch always holds two of one key. */
const KEYS = 3;

/** Consecutive repeats collapsed: a message sent again right after the kill is one step. */
const steps = (ns: number[]) => ns.filter((n, i) => i === 0 || ns[i - 1] !== n);

/**
 * Order across a crash: the lease holder is killed (-9) mid-stream and another process of the
 * same host takes over. At the receiver the order holds per subscription (fifo) or per key
 * (key); every delivery ends delivered; duplicates are only messages in flight at the kill.
 */
describe("kill -9 while delivering in order, then another process takes over", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "stock-sync-crash-order-"));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const subs = [
    { name: "fifo", ordering: "fifo", total: 100, concurrency: 4, keys: undefined, delayMs: 3 },
    { name: "keyed", ordering: "key", total: 200, concurrency: 4, keys: KEYS, delayMs: 50 },
  ] as const;
  for (const backend of ["postgres", "pglite"] as const) {
    const skip = backend === "postgres" && !inject("pgTemplate");
    it.skipIf(skip)(
      `[${backend}] fifo and key: order holds across the takeover, all delivered, duplicates only of what was in flight`,
      async () => {
        const cleanup: (() => Promise<unknown>)[] = [];
        try {
          const receivers: Record<string, WatchReceiver> = {};
          for (const s of subs) {
            const r = await startWatchReceiver(() => ({ status: 204, delayMs: s.delayMs }));
            cleanup.push(() => r.close());
            receivers[s.name] = r;
          }
          const stateDb = await crashStateDb(backend, dir);
          cleanup.push(() => stateDb.drop());
          const config = await stateDb.writeConfig(
            subs
              .map(
                (s) =>
                  `  - name: ${s.name}\n    subjects: ["order.*"]\n    url: "${receivers[s.name]!.url}"\n` +
                  `    ordering: ${s.ordering}\n    concurrency: ${s.concurrency}\n    timeout: 5s\n`,
              )
              .join(""),
          );
          const first = await startCli(["--config", config], { timeoutMs: 60_000 });
          cleanup.push(() => first.stop("SIGKILL"));
          const stateUrl = () => stateDb.stateUrl();
          const client = openPostgres(await stateUrl(), { poolSize: 1 });
          try {
            for (const s of subs)
              await insertBacklog(client, { tag: s.name, n: s.total, subscriptions: [s.name], keys: s.keys });
          } finally {
            await client.close();
          }
          const at = (name: string) => receivers[name]!.visits;
          const received = () => subs.reduce((a, s) => a + at(s.name).length, 0);
          await waitUntil(async () => subs.every((s) => at(s.name).length >= 30), 60_000, "both mid-stream");
          const killedAt = Date.now();
          first.child.kill("SIGKILL");
          await new Promise((r) => first.child.once("exit", r));
          const atKill = Object.fromEntries(subs.map((s) => [s.name, at(s.name).length]));
          const receivedBeforeKill = new Set(subs.flatMap((s) => at(s.name).map((v) => v.id)));
          const second = await startCli(["--config", config], { timeoutMs: 60_000 });
          cleanup.push(() => second.stop("SIGTERM"));
          // Same host, dead pid: taken over at once, not after the lease's 60 s expiry.
          const atTakeover = received();
          await waitUntil(
            async () => received() > atTakeover,
            TAKEOVER_MS,
            "a request from the second process",
          );

          const state = openPostgres(await stateUrl(), { poolSize: 1 });
          cleanup.push(() => state.close());
          const expected = subs.reduce((a, s) => a + s.total, 0);
          await waitUntil(
            async () => {
              const { rows } = await state.query<{ n: number }>(
                "select count(*)::int as n from stock_sync.deliveries where status = 'delivered'",
              );
              return rows[0]!.n === expected;
            },
            90_000,
            "every delivery recorded as delivered",
          );
          const { rows: statuses } = await state.query<{ subscription: string; status: string; n: number }>(
            "select subscription, status, count(*)::int as n from stock_sync.deliveries group by 1, 2 order by 1, 2",
          );
          expect(statuses).toEqual([
            { subscription: "fifo", status: "delivered", n: 100 },
            { subscription: "keyed", status: "delivered", n: 200 },
          ]);
          // In flight at the kill: received before it, with no attempt recorded before it.
          const { rows: recorded } = await state.query<{ id: string }>(
            `select distinct d.message_id as id from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id
             where a.attempted_at < $1`,
            [new Date(killedAt)],
          );
          const recordedBeforeKill = new Set(recorded.map((r) => r.id));
          const inFlightAtKill = new Set([...receivedBeforeKill].filter((id) => !recordedBeforeKill.has(id)));

          for (const s of subs) {
            const got = at(s.name);
            const ids = got.map((v) => v.id);
            const inFlight = ids.filter((id) => inFlightAtKill.has(id));
            expect(new Set(ids).size, s.name).toBe(s.total);
            expect(atKill[s.name], `${s.name} was mid-stream at the kill`).toBeLessThan(s.total);
            // fifo: one request at a time (whatever its concurrency), the next after the previous outcome was committed
            expect(new Set(inFlight).size, s.name).toBeLessThanOrEqual(
              s.ordering === "fifo" ? 1 : 2 * s.concurrency,
            );
            const duplicates = ids.filter((id, i) => ids.indexOf(id) !== i);
            expect(
              duplicates.filter((id) => !inFlightAtKill.has(id)),
              s.name,
            ).toEqual([]);
            expect(duplicates.length, s.name).toBeLessThanOrEqual(new Set(inFlight).size);
            const ns = got.map((v) => v.n);
            // Never a request while an earlier message of its order (the subscription under
            // fifo, its key under key) is still open at the receiver, the killed process's included.
            const group = (v: Visit) => (s.ordering === "fifo" ? 0 : v.n % KEYS);
            const early = got.filter((v) =>
              got.some(
                (o) =>
                  o.n < v.n &&
                  group(o) === group(v) &&
                  o.arrived <= v.arrived &&
                  (o.ended ?? Infinity) > v.arrived,
              ),
            );
            expect(
              early.map((v) => v.n),
              `${s.name}: sent while an earlier one was open`,
            ).toEqual([]);
            const all = [...Array(s.total).keys()].map((i) => i + 1);
            if (s.ordering === "fifo") expect(steps(ns), "fifo order").toEqual(all);
            else
              for (let k = 0; k < KEYS; k++)
                expect(steps(ns.filter((n) => n % KEYS === k)), `key k${k} order`).toEqual(
                  all.filter((n) => n % KEYS === k),
                );
          }
        } finally {
          await runCleanup(cleanup);
        }
      },
      240_000,
    );
  }
});
