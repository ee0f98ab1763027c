/**
 * Found by the PGlite loop audit (the class of fifo-refused-check.test.ts): an attempt whose
 * request cannot be prepared (an order event its `body.template` cannot render) fails with no I/O
 * at all, and its record, #done → #look → #fill and the next read are database statements only.
 * So a due backlog of such events is swept in one chain of promise callbacks: on PostgreSQL the
 * chain waits on sockets and the event loop turns at every round trip; on PGlite (the embedded
 * default) it never turns until every due event has failed: no timer fires (lease renewals, the
 * engine's poll, the scheduler), no HTTP request is answered and no signal is handled meanwhile.
 * The stretch is bounded by the due backlog (~2 ms per event here) and by the lease (#stillOurs
 * refuses once fewer than `timeout` ms of it are left: up to lease - timeout = 45 s by default),
 * then it starts again after the renewal. Here 200 events: on PGlite every attempt came in the
 * same turn of the event loop (none of the 5 ms timer's ticks ran between them). Now the worker
 * yields once per read of the backlog (worker.ts #pump): at most one read's rows in a turn.
 */
import { expect, it } from "vitest";
import { enqueue } from "../../src/outbox/enqueue.js";
import { TARGET_PER_SLOT } from "../../src/outbox/worker.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";

const { cleanup, receiver } = useCleanup();

const EVENTS = 200;
const CONCURRENCY = 4;
// retried in an hour: each event fails once here, so the sweep ends once the backlog has
const yaml = (url: string) => `subscriptions:
  - name: s
    subjects: ["order.*"]
    url: "${url}"
    ordering: none
    concurrency: ${CONCURRENCY}
    retry_intervals: [1h]
    body:
      format: json
      template: '{"total": $number(data.total)}'
`;

describeEachDb("order events a template cannot render, many due at once", (t) => {
  it("the worker lets the event loop turn while it fails them, at least once per read of the backlog", async () => {
    const r = await receiver();
    // event-loop turns (a check-phase callback re-armed at each) and 5 ms timer ticks so far
    let turns = 0;
    let ticks = 0;
    let counting = true;
    const turn = () => {
      turns++;
      if (counting) setImmediate(turn);
    };
    setImmediate(turn);
    const timer = setInterval(() => ticks++, 5);
    cleanup.push(() => {
      counting = false;
      clearInterval(timer);
    });
    const seen: { turn: number; tick: number }[] = [];
    const e = await startEngine(t().db, testConfig(yaml(r.url)), {
      start: false,
      onAttempt: (_sub, _row, outcome) => {
        if (outcome === "retry") seen.push({ turn: turns, tick: ticks });
      },
    });
    cleanup.push(() => e.stop());
    await t().db.tx(async (tx) => {
      for (let i = 0; i < EVENTS; i++)
        await enqueue(tx, e.subs, {
          subject: "order.created",
          payload: JSON.stringify({ data: { order_id: `O-${i}`, total: "twelve" } }),
          contentType: "application/json",
        });
    });
    await e.engine.start();
    await waitUntil(async () => seen.length >= EVENTS, 20_000, "every event's failed attempt");
    expect(r.requests).toEqual([]); // nothing could be rendered, so nothing went out
    // the most failed attempts recorded in one turn of the event loop
    const perTurn = new Map<number, number>();
    for (const s of seen) perTurn.set(s.turn, (perTurn.get(s.turn) ?? 0) + 1);
    const most = Math.max(...perTurn.values());
    // one read of the backlog takes at most TARGET_PER_SLOT × concurrency rows; allow two
    expect(
      most,
      `failed attempts in one event-loop turn (of ${EVENTS}); 5 ms timer ticks from the first to the last: ${seen[0]!.tick} -> ${seen.at(-1)!.tick}`,
    ).toBeLessThanOrEqual(2 * TARGET_PER_SLOT * CONCURRENCY);
  });
});
