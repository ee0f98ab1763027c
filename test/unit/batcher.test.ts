import { describe, expect, it } from "vitest";
import { Batcher } from "../../src/db/batcher.js";

/** A batch runner the test finishes by hand, recording what each batch got. */
function manual() {
  const batches: number[][] = [];
  const finish: (() => void)[] = [];
  const batcher = new Batcher<number, number>(async (items) => {
    batches.push(items);
    await new Promise<void>((r) => finish.push(r));
    if (items.includes(-1)) throw new Error("boom");
    return items.map((i) => i * 10);
  }, 3);
  return { batcher, batches, finishNext: () => finish.shift()?.() };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("Batcher", () => {
  it("runs the first item at once and groups what arrives meanwhile, in order, up to max", async () => {
    const { batcher, batches, finishNext } = manual();
    const results = [1, 2, 3, 4, 5].map((i) => batcher.submit(i));
    await tick();
    expect(batches).toEqual([[1]]);
    finishNext();
    await tick();
    expect(batches).toEqual([[1], [2, 3, 4]]);
    finishNext();
    await tick();
    expect(batches).toEqual([[1], [2, 3, 4], [5]]);
    finishNext();
    expect(await Promise.all(results)).toEqual([10, 20, 30, 40, 50]);
    expect(batcher.batches).toBe(3);
  });

  it("rejects every item of a failed batch and goes on with the next", async () => {
    const { batcher, finishNext } = manual();
    const first = batcher.submit(1);
    const failed = [batcher.submit(2), batcher.submit(-1)].map((p) =>
      p.then(String, (err: Error) => err.message),
    );
    await tick();
    finishNext();
    await tick();
    const later = batcher.submit(4);
    finishNext();
    await tick();
    finishNext();
    expect(await first).toBe(10);
    expect(await Promise.all(failed)).toEqual(["boom", "boom"]);
    expect(await later).toBe(40);
  });

  it("an idle batcher starts a new batch for the next item", async () => {
    const { batcher, batches, finishNext } = manual();
    const a = batcher.submit(1);
    await tick();
    finishNext();
    expect(await a).toBe(10);
    const b = batcher.submit(2);
    await tick();
    finishNext();
    expect(await b).toBe(20);
    expect(batches).toEqual([[1], [2]]);
  });

  it("refuses a result count that does not match the batch", async () => {
    const lonely = new Batcher<number, number>(async () => []);
    await expect(lonely.submit(1)).rejects.toThrow("batch returned 0 results for 1 items");
    expect(() => new Batcher(async () => [], 0)).toThrow("at least 1, got 0");
  });
});
