import type { Db } from "../../src/db/db.js";

/**
 * The same database with a hook around `query`: `before` may hold a query back (return a promise)
 * and `after` sees what came back. Only for tests that must place a step of the product at a
 * known moment (a lock taken after another run finished, a fetch made before a pause).
 */
export function spyDb(
  db: Db,
  hooks: {
    before?: (text: string, values: readonly unknown[] | undefined) => Promise<void> | undefined;
    /** May hold the answer back too (return a promise): the query ran, its caller waits. */
    after?: (text: string, rows: unknown[]) => Promise<void> | void;
  },
): Db {
  const query: Db["query"] = async (text, values) => {
    await hooks.before?.(text, values);
    const result = await db.query(text, values);
    await hooks.after?.(text, result.rows);
    return result as never;
  };
  return new Proxy(db, {
    get(target, prop) {
      if (prop === "query") return query;
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** A promise with its resolve function, to hold something back until the test lets it go. */
export function gate(): { promise: Promise<void>; open(): void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => {
    open = r;
  });
  return { promise, open };
}
