import { once } from "node:events";
import { PassThrough } from "node:stream";
import type { Db, Tx } from "../db/db.js";
import { csvHeader } from "./copy-csv.js";
import { createFullRows, FULL_ROWS } from "./state.js";

/**
 * A full's rows COPYed into the state database while they are read (a tee beside the part
 * files), in the transaction that later publishes the full: once the read ends, the sent state
 * can be compared at once instead of after a second pass over the parts (~1 s per 1M keys). The
 * transaction touches nothing shared until `commit` (its temporary table is its own); a run that
 * does not publish rolls it back (`abandon`), so a failed or refused run leaves nothing.
 */
export type SentLoad = {
  /** Whole CSV rows, as written to the parts; resolves when the COPY takes more. */
  write(data: Buffer): Promise<void>;
  /** Ends the COPY; resolves to the rows loaded. */
  finish(): Promise<number>;
  /** Runs `fn` in the held transaction and commits. */
  commit<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Rolls back (when not committed); never throws. */
  abandon(): Promise<void>;
};

/**
 * Whether a full may hold a state connection through its read: only on a real server (PGlite
 * holds one call's COPY in memory), and only when the state pool keeps a connection for the
 * run's other statements (and the source's, when it reads through the same pool) meanwhile.
 */
export function canLoadWhileReading(deps: { db: Db; source: Db; statePoolSize?: number }): boolean {
  const needed = deps.source === deps.db ? 3 : 2;
  return deps.db.kind === "postgres" && (deps.statePoolSize ?? 0) >= needed;
}

export async function openSentLoad(db: Db, columns: readonly string[]): Promise<SentLoad> {
  const held = holdTx(db);
  let tx: Tx;
  try {
    tx = await held.tx;
    await createFullRows(tx, columns);
  } catch (err) {
    await held.abandon();
    throw err;
  }
  const input = new PassThrough();
  input.write(csvHeader(columns));
  const copied = tx.copyFrom(FULL_ROWS, columns, input);
  let failed: unknown = null;
  // A failed COPY stops the read's writes (the drain they wait for would never come).
  copied.catch((err: unknown) => {
    failed = err;
    input.destroy(err as Error);
  });
  return {
    async write(data) {
      if (failed) throw failed;
      if (!input.write(data)) await once(input, "drain");
    },
    async finish() {
      input.end();
      return copied;
    },
    commit: (fn) => held.commit(fn),
    async abandon() {
      input.destroy();
      await copied.catch(() => undefined);
      await held.abandon();
    },
  };
}

/** `db.tx` held open across other work: the transaction is begun now and ended by `commit`/`abandon`. */
function holdTx(db: Db) {
  let body!: (fn: (tx: Tx) => Promise<unknown>) => void;
  const bodyGiven = new Promise<(tx: Tx) => Promise<unknown>>((resolve) => (body = resolve));
  let begun!: (tx: Tx) => void;
  const tx = new Promise<Tx>((resolve) => (begun = resolve));
  const done = db.tx(async (t) => {
    begun(t);
    return (await bodyGiven)(t);
  });
  let ended = false;
  const end = <T>(fn: (tx: Tx) => Promise<T>): Promise<T> => {
    ended = true;
    body(fn);
    return done as Promise<T>;
  };
  return {
    // when the transaction cannot begin (no connection), `tx` fails with its error
    tx: Promise.race([tx, done.then(() => Promise.reject(new Error("transaction ended before it began")))]),
    commit: end,
    async abandon() {
      if (ended) return;
      await end(() => Promise.reject(new Error("abandoned"))).catch(() => undefined);
    },
  };
}
