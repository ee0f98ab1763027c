/**
 * The one database interface the connector uses, for the state database and for the source.
 * Two implementations: `pg.ts` (a real PostgreSQL server through a `pg` pool) and
 * `embedded.ts` (PGlite in this process, shared with other processes over the wire protocol).
 */
export type Row = Record<string, unknown>;

export type Queryable = {
  query<T extends Row = Row>(
    text: string,
    values?: readonly unknown[],
  ): Promise<{ rows: T[]; rowCount: number }>;
};

export type TxOptions = {
  /** @default "read committed" */
  isolation?: "read committed" | "repeatable read" | "serializable";
  /** @default false */
  readOnly?: boolean;
};

export type Db = Queryable & {
  /** Runs `fn` in one transaction on one connection; commits when it resolves, rolls back when it throws. */
  tx<T>(fn: (tx: Tx) => Promise<T>, opts?: TxOptions): Promise<T>;
  /**
   * LISTEN on a channel, where the back end can deliver notifications to this process (a real
   * PostgreSQL server, or PGlite in this process). Resolves to a function that stops listening.
   */
  listen?(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /** Closes the pool or the embedded database. */
  close(): Promise<void>;
  /** "postgres" or "pglite", for logs and the rare behaviour that differs. */
  readonly kind: "postgres" | "pglite";
};

export type Tx = Queryable & {
  /**
   * Streams the rows of a query without holding them all in memory (a server-side cursor read in
   * batches). Only inside a transaction, so the rows come from the transaction's snapshot.
   */
  stream<T extends Row = Row>(
    text: string,
    values?: readonly unknown[],
    batchSize?: number,
  ): AsyncIterable<T>;
};

export function beginStatement(opts: TxOptions = {}): string {
  const iso = opts.isolation ?? "read committed";
  return `begin isolation level ${iso}${opts.readOnly ? " read only" : ""}`;
}
