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
    opts?: QueryOptions,
  ): Promise<{ rows: T[]; rowCount: number }>;
};

export type QueryOptions = {
  /**
   * Prepares the statement under this name on each connection, once, so that it is parsed and
   * planned once per connection instead of at every call (for the statements run once per batch
   * of messages: the plan of a 32-row outcome write took 0.85 of its 3 ms on the server). Only
   * for a constant text with a plan that does not depend on the values (a generic plan is used);
   * one name, one text. PGlite in this process ignores it.
   */
  name?: string;
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
  /**
   * COPY … TO STDOUT outside a transaction, on a connection of its own for the while: the
   * server's bytes as they arrive. Real PostgreSQL only, like Tx.copyTo.
   */
  copyTo?(sql: string): AsyncIterable<Buffer>;
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
  /**
   * Loads CSV into `table` (a trusted name, used as written) without a statement per row: COPY
   * FROM STDIN on PostgreSQL, COPY FROM '/dev/blob' on PGlite. The first line is a header and is
   * skipped; an empty field is an empty string, never NULL. PGlite holds one call's CSV in
   * memory, so pass large data in several calls. Resolves to the number of rows loaded.
   */
  copyFrom(table: string, columns: readonly string[], csv: CsvSource): Promise<number>;
  /**
   * COPY … TO STDOUT: the server's bytes as they arrive (a row may be split across chunks).
   * Real PostgreSQL only: absent on PGlite (in this process, PGlite has no STDOUT).
   */
  copyTo?(sql: string): AsyncIterable<Buffer>;
  /** The names and type oids of a query's result columns (planned, no row fetched). */
  describe(text: string, values?: readonly unknown[]): Promise<ResultColumn[]>;
};

export type ResultColumn = { name: string; typeId: number };

/** `describe` runs this: the query with no row wanted. */
// The newline ends a trailing `-- comment` of the query before the closing parenthesis.
export const describeStatement = (text: string) => `select * from (${text}\n) as q limit 0`;

export type CsvSource = Iterable<Buffer> | AsyncIterable<Buffer>;

export const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** The COPY … FROM of `Tx.copyFrom`; `from` is STDIN or PGlite's '/dev/blob'. */
export function copyFromStatement(table: string, columns: readonly string[], from: string): string {
  const list = columns.map(quoteIdent).join(", ");
  return `copy ${table} (${list}) from ${from} with (format csv, header true, force_not_null (${list}))`;
}

export function beginStatement(opts: TxOptions = {}): string {
  const iso = opts.isolation ?? "read committed";
  return `begin isolation level ${iso}${opts.readOnly ? " read only" : ""}`;
}
