import { describe, expect, it } from "vitest";
import { type CoalescerOptions, createCoalescer } from "../../src/db/coalesce.js";

/** A flush the test completes by hand, recording every batch it was given and how many ran at once. */
function manualFlush<I>() {
  const batches: I[][] = [];
  const pending: { finish: (results: PromiseSettledResult<string>[] | Error) => void }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const flush = (items: I[]) => {
    batches.push(items);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    return new Promise<PromiseSettledResult<string>[]>((resolve, reject) => {
      pending.push({
        finish(results) {
          inFlight--;
          if (results instanceof Error) reject(results);
          else resolve(results);
        },
      });
    });
  };
  const ok = (items: I[]) => items.map((i) => ({ status: "fulfilled", value: `done ${i}` }) as const);
  return {
    flush,
    batches,
    maxInFlight: () => maxInFlight,
    /** Completes the oldest unfinished batch, by default answering each item `done <item>`. */
    async finishNext(results?: PromiseSettledResult<string>[] | Error) {
      const next = pending.shift();
      if (!next) throw new Error("no batch in flight");
      next.finish(results ?? ok(batches[batches.length - pending.length - 1]!));
      await new Promise((r) => setImmediate(r)); // let the coalescer start the next batch
    },
  };
}

function setup<I>(opts: CoalescerOptions<I> = {}) {
  const f = manualFlush<I>();
  return { f, c: createCoalescer<I, string>(f.flush, opts) };
}

describe("createCoalescer", () => {
  it("writes the first item at once, alone, and groups what arrives meanwhile into the next batch", async () => {
    const { f, c } = setup<number>();
    const first = c.submit(1);
    expect(f.batches).toEqual([[1]]);
    const rest = [2, 3, 4].map((i) => c.submit(i));
    expect(f.batches).toEqual([[1]]); // no second batch while the first is in flight
    await f.finishNext();
    expect(await first).toBe("done 1");
    expect(f.batches).toEqual([[1], [2, 3, 4]]);
    await f.finishNext();
    expect(await Promise.all(rest)).toEqual(["done 2", "done 3", "done 4"]);
    expect(f.maxInFlight()).toBe(1);
    expect(c.stats()).toEqual({ batches: 2, items: 4 });
  });

  it("starts the next batch before answering the items of the one that finished", async () => {
    // (#16: the intake's next statement waited while a batch's HTTP answers were written)
    const { f, c } = setup<number>();
    let batchesWhenAnswered = 0;
    const first = c.submit(1).then(() => {
      batchesWhenAnswered = f.batches.length;
    });
    const second = c.submit(2);
    await f.finishNext();
    await first;
    expect(batchesWhenAnswered).toBe(2); // [2] was on its way when 1 was answered
    await f.finishNext();
    expect(await second).toBe("done 2");
  });

  it("goes idle after draining, so the next item is again written at once", async () => {
    const { f, c } = setup<number>();
    const a = c.submit(1);
    await f.finishNext();
    await a;
    const b = c.submit(2);
    expect(f.batches).toEqual([[1], [2]]);
    await f.finishNext();
    expect(await b).toBe("done 2");
  });

  it("caps a batch at maxBatch items; the rest go in the following batches, in order", async () => {
    const { f, c } = setup<number>({ maxBatch: 2 });
    const all = [1, 2, 3, 4, 5, 6].map((i) => c.submit(i));
    for (let i = 0; i < 4; i++) await f.finishNext();
    expect(f.batches).toEqual([[1], [2, 3], [4, 5], [6]]);
    expect(await Promise.all(all)).toEqual([1, 2, 3, 4, 5, 6].map((i) => `done ${i}`));
  });

  it("caps a batch by weight, and still sends an item heavier than the cap, alone", async () => {
    const { f, c } = setup<number>({ maxWeight: 10, weigh: (n) => n });
    const all = [1, 4, 5, 2, 30, 3].map((i) => c.submit(i));
    for (let i = 0; i < 5; i++) await f.finishNext();
    expect(f.batches).toEqual([[1], [4, 5], [2], [30], [3]]);
    await Promise.all(all);
  });

  it("fails every item of a batch whose flush rejects, and none of the next batch", async () => {
    const { f, c } = setup<number>();
    const first = c.submit(1);
    const second = [c.submit(2), c.submit(3)];
    const down = new Error("database down");
    const failed = expect(first).rejects.toBe(down);
    await f.finishNext(down);
    await failed;
    await f.finishNext();
    expect(await Promise.all(second)).toEqual(["done 2", "done 3"]);
  });

  it("answers each item with its own result, fulfilled or rejected", async () => {
    const { f, c } = setup<string>();
    const lead = c.submit("lead");
    const [a, b] = [c.submit("a"), c.submit("b")];
    await f.finishNext();
    await lead;
    const poison = new Error("value too long");
    const failed = expect(a).rejects.toBe(poison);
    await f.finishNext([
      { status: "rejected", reason: poison },
      { status: "fulfilled", value: "stored b" },
    ]);
    await failed;
    expect(await b).toBe("stored b");
  });

  it("fails the batch when flush answers the wrong number of results, instead of leaving requests waiting", async () => {
    const { f, c } = setup<number>();
    const failed = expect(c.submit(1)).rejects.toThrow("flush answered 0 results for 1 items");
    await f.finishNext([]);
    await failed;
  });

  it("survives a flush that throws before returning a promise", async () => {
    const c = createCoalescer<number, number>(() => {
      throw new Error("sync");
    });
    await expect(c.submit(1)).rejects.toThrow("sync");
    await expect(c.submit(2)).rejects.toThrow("sync"); // not stuck busy
  });

  it("with inFlight 2, writes a second batch meanwhile of what may overlap; an item that may not waits, and nothing overtakes it", async () => {
    const { f, c } = setup<number>({ inFlight: 2, mayOverlap: (i) => i % 2 === 0 });
    const all = [1, 2].map((i) => c.submit(i));
    expect(f.batches).toEqual([[1], [2]]); // 2 may overlap 1: written at once
    all.push(...[4, 3, 6].map((i) => c.submit(i)));
    expect(f.batches).toEqual([[1], [2]]); // two in flight: the rest wait
    await f.finishNext(); // [1] done: 4 may overlap [2]; 3 may not, and 6 stays behind it
    expect(f.batches).toEqual([[1], [2], [4]]);
    await f.finishNext(); // [2] done: 3 still may not overlap [4]
    expect(f.batches).toEqual([[1], [2], [4]]);
    await f.finishNext(); // nothing in flight: 3 goes, and 6 with it
    expect(f.batches).toEqual([[1], [2], [4], [3, 6]]);
    await f.finishNext();
    expect(await Promise.all(all)).toEqual([1, 2, 4, 3, 6].map((i) => `done ${i}`));
    expect(f.maxInFlight()).toBe(2);
  });

  it("poke: a mayOverlap that turns true while a batch is in flight starts the next batch then, with all that waited", async () => {
    let open = false;
    const { f, c } = setup<number>({ inFlight: 2, mayOverlap: () => open });
    const all = [1, 2, 3].map((i) => c.submit(i));
    c.poke(); // nothing changed: still one batch
    expect(f.batches).toEqual([[1]]);
    open = true;
    c.poke();
    expect(f.batches).toEqual([[1], [2, 3]]);
    await f.finishNext();
    await f.finishNext();
    expect(await Promise.all(all)).toEqual(["done 1", "done 2", "done 3"]);
    expect(f.maxInFlight()).toBe(2);
  });

  it("without mayOverlap, inFlight 2 still writes one batch at a time", async () => {
    const { f, c } = setup<number>({ inFlight: 2 });
    const all = [1, 2, 3].map((i) => c.submit(i));
    await f.finishNext();
    await f.finishNext();
    expect(f.batches).toEqual([[1], [2, 3]]);
    expect(await Promise.all(all)).toEqual(["done 1", "done 2", "done 3"]);
    expect(f.maxInFlight()).toBe(1);
  });

  it("refuses a maxBatch that is not a whole number ≥ 1, quoting it", () => {
    const flush = async (items: number[]) => items.map((value) => ({ status: "fulfilled", value }) as const);
    expect(() => createCoalescer(flush, { maxBatch: 0 })).toThrow("got 0");
    expect(() => createCoalescer(flush, { maxBatch: 1.5 })).toThrow("got 1.5");
  });
});
