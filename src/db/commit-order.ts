/**
 * Overlapping transactions that must look serial to a reader of ids: each takes its ids (a
 * `bigserial`) only after the one before it has taken its own, and commits only after the one
 * before it has committed. In between they overlap: the next one's statement runs on the server
 * while the previous one's commit waits for its fsync.
 *
 * Why both: a fifo worker reads the lowest owed delivery id it can see. If a later transaction
 * drew lower ids (ids would not follow the order of the batches), or committed first (its rows
 * visible while an earlier batch's lower ids are not yet), the worker would send a later event
 * before an earlier one. No I/O here: the caller waits on `previous` at the two points.
 */

/** The turn of one transaction in the order. */
export type Turn = {
  /** The transaction before this one: wait for these before taking ids, and before committing. */
  previous: { assigned: Promise<void>; committed: Promise<void> };
  /** Call once this transaction's ids are taken (or it will take none): the next one may take its own. */
  assigned(): void;
  /** Call once this transaction has committed or given up (rolled back, failed). */
  committed(): void;
};

export type CommitOrder = {
  /** The next turn: call in the order the transactions must appear in. */
  next(): Turn;
};

export function createCommitOrder(): CommitOrder {
  let last = { assigned: Promise.resolve(), committed: Promise.resolve() };
  const after = (a: Promise<void>, b: Promise<void>) => Promise.all([a, b]).then(() => undefined);
  return {
    next() {
      const assigned = signal();
      // committed implies assigned: a turn that skips straight to the end releases both
      const committed = signal();
      const previous = last;
      // A turn counts as done only once every turn before it is: one that fails early (its
      // connection lost) must not let the next commit ahead of an earlier one still committing.
      last = {
        assigned: after(previous.assigned, assigned.promise),
        committed: after(previous.committed, committed.promise),
      };
      return {
        previous,
        assigned: assigned.fire,
        committed() {
          assigned.fire();
          committed.fire();
        },
      };
    },
  };
}

function signal(): { promise: Promise<void>; fire: () => void } {
  let fire!: () => void;
  const promise = new Promise<void>((resolve) => {
    fire = resolve;
  });
  return { promise, fire };
}
