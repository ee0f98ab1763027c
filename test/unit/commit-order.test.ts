import { describe, expect, it } from "vitest";
import { createCommitOrder } from "../../src/db/commit-order.js";

/** Whether a promise has settled, after the microtasks queued so far. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => {
    done = true;
  });
  await new Promise((r) => setImmediate(r));
  return done;
}

describe("createCommitOrder", () => {
  it("lets the first turn go at once, and each next one take ids and commit only after the one before", async () => {
    const order = createCommitOrder();
    const [a, b] = [order.next(), order.next()];
    expect(await settled(a.previous.committed)).toBe(true);
    expect(await settled(b.previous.assigned)).toBe(false);
    a.assigned();
    expect(await settled(b.previous.assigned)).toBe(true);
    expect(await settled(b.previous.committed)).toBe(false);
    a.committed();
    expect(await settled(b.previous.committed)).toBe(true);
  });

  it("a turn that ends early (its connection lost) releases the next one only once every earlier turn has", async () => {
    const order = createCommitOrder();
    const [a, b, c] = [order.next(), order.next(), order.next()];
    a.assigned();
    b.committed(); // failed before its commit: also counts as assigned
    expect(await settled(c.previous.assigned)).toBe(true);
    expect(await settled(c.previous.committed)).toBe(false); // a is still committing
    a.committed();
    expect(await settled(c.previous.committed)).toBe(true);
  });
});
