import { pipeline } from "node:stream/promises";
import pg from "pg";
import { from as copyFromStdin, to as copyToStdout } from "pg-copy-streams";
import QueryStream from "pg-query-stream";
import { ConnectorError } from "../errors.js";
import {
  beginStatement,
  copyFromStatement,
  type Db,
  describeStatement,
  type QueryOptions,
  type Row,
  type Tx,
} from "./db.js";
import { insertCsv } from "./insert-csv.js";

/** int8 as a number when it fits, as PGlite does, so both back ends return the same shapes. */
function parseInt8(v: string): number | bigint {
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : BigInt(v);
}

const types = {
  getTypeParser(oid: number, format?: "text" | "binary") {
    if (oid === 20 && format !== "binary") return parseInt8;
    return pg.types.getTypeParser(oid, format);
  },
};

export type PgOptions = {
  /** @default 10 */
  poolSize?: number;
  /** @default 5000 */
  connectTimeoutMs?: number;
  /** Called when an idle pooled connection dies (e.g. the server restarted). */
  onIdleError?: (err: Error) => void;
  /** Reported as Db.kind: a PGlite served over the wire is still "pglite". */
  kind?: Db["kind"];
  /**
   * The longest any query (not a stream or COPY) may wait for its answer before it fails and its
   * connection is dropped: a connection hung in the network must not freeze its caller for ever.
   * @default 300000
   */
  queryTimeoutMs?: number;
};

/** Long enough for the biggest set-based statement of a full (millions of rows), and bounded. */
const QUERY_TIMEOUT_MS = 5 * 60 * 1000;

/** A `Db` over a real PostgreSQL server (or anything speaking its protocol) through a `pg` pool. */
export function openPostgres(url: string, opts: PgOptions = {}): Db {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.poolSize ?? 10,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    // TCP keepalive: a peer gone without a FIN (a cut network, a dead host) is noticed by the kernel
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    types,
  });
  const timeout = opts.queryTimeoutMs ?? QUERY_TIMEOUT_MS;
  // Without a listener a client's error event (server restart) would crash the process; the
  // query in progress, if any, fails on its own.
  pool.on("error", (err) => opts.onIdleError?.(err));
  pool.on("connect", (client) => client.on("error", (err) => opts.onIdleError?.(err)));

  const kind = opts.kind ?? "postgres";
  // On a timeout the pool drops the connection (released with the error), so nothing queues behind it.
  const query = async <T extends Row>(text: string, values?: readonly unknown[], qo?: QueryOptions) =>
    lastResult<T>(await pool.query(bounded(text, values, timeout, prepared(kind, qo))).catch(rethrow));

  return {
    kind,
    query,
    async tx(fn, txOpts) {
      const client = await pool.connect().catch(rethrow);
      let broken: Error | undefined;
      try {
        await client.query(bounded(beginStatement(txOpts), undefined, timeout));
        const result = await fn(clientTx(client, kind, timeout));
        await client.query(bounded("commit", undefined, timeout));
        return result;
      } catch (err) {
        // After a timeout the rollback waits behind the hung query, times out too, and the
        // connection is discarded.
        await client.query(bounded("rollback", undefined, timeout)).catch((e: Error) => {
          broken = e;
        });
        throw err;
      } finally {
        // A connection that could not roll back is discarded, not returned to the pool.
        client.release(broken);
      }
    },
    ...(kind === "postgres" ? { copyTo: (sql: string) => pooledCopyTo(pool, sql, timeout) } : {}),
    listen: (channel, onPayload) => listenWithReconnect(url, channel, onPayload, opts),
    async close() {
      await pool.end();
    },
  };
}

/**
 * COPY … TO STDOUT on a pooled connection. Bounded like a query: a COPY whose bytes stop coming
 * for `timeoutMs` fails. A connection left inside a COPY (failed, timed out, or not read to its
 * end) is discarded, not returned to the pool.
 */
async function* pooledCopyTo(pool: pg.Pool, sql: string, timeoutMs: number): AsyncGenerator<Buffer> {
  const client = await pool.connect().catch(rethrow);
  let finished = false;
  const stream = client.query(copyToStdout(sql));
  const timer = setTimeout(
    () => stream.destroy(new Error(`COPY gave no bytes for ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    for await (const chunk of stream) {
      timer.refresh();
      yield chunk as Buffer;
    }
    finished = true;
  } finally {
    clearTimeout(timer);
    client.release(finished ? undefined : new Error("COPY not read to its end"));
  }
}

const RECONNECT_MS = 1000;

/**
 * A dedicated connection for LISTEN (a pooled one would be handed to other queries). When it
 * drops (server restart), it reconnects every second until it works again; what was notified
 * meanwhile is found by the caller's polling.
 */
async function listenWithReconnect(
  url: string,
  channel: string,
  onPayload: (payload: string) => void,
  opts: PgOptions,
): Promise<() => Promise<void>> {
  let client: pg.Client | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  const connect = async () => {
    const c = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    });
    c.on("notification", (n) => {
      if (n.channel === channel) onPayload(n.payload ?? "");
    });
    c.on("error", (err) => {
      opts.onIdleError?.(err);
      c.end().catch(() => undefined);
      if (!closed) timer = setTimeout(retry, RECONNECT_MS);
    });
    await c.connect();
    await c.query(`listen ${c.escapeIdentifier(channel)}`);
    client = c;
  };
  const retry = () => {
    if (closed) return;
    connect().catch(() => {
      if (!closed) timer = setTimeout(retry, RECONNECT_MS);
    });
  };
  await connect().catch(rethrow);
  return async () => {
    closed = true;
    clearTimeout(timer);
    await client?.end().catch(() => undefined);
  };
}

/** Several statements in one parameterless query give an array of results: keep the last, as PGlite does. */
function lastResult<T extends Row>(res: pg.QueryResult | pg.QueryResult[]): { rows: T[]; rowCount: number } {
  const last = Array.isArray(res) ? res[res.length - 1] : res;
  return { rows: (last?.rows ?? []) as T[], rowCount: last?.rowCount ?? 0 };
}

/**
 * Named statements only on a real server: PGlite served over a socket has one session for every
 * client, where a second client preparing the same name would fail ("already exists").
 */
const prepared = (kind: Db["kind"], opts?: QueryOptions) => (kind === "pglite" ? undefined : opts);

/** A query config with a client-side bound on the wait for its answer. */
function bounded(
  text: string,
  values: readonly unknown[] | undefined,
  timeoutMs: number,
  opts?: QueryOptions,
): pg.QueryConfig {
  return {
    text,
    values: values as unknown[] | undefined,
    query_timeout: timeoutMs,
    ...(opts?.name ? { name: opts.name } : {}),
  } as pg.QueryConfig;
}

function clientTx(client: pg.PoolClient, kind: Db["kind"], timeout: number): Tx {
  const tx: Tx = {
    async query<T extends Row>(text: string, values?: readonly unknown[], qo?: QueryOptions) {
      return lastResult<T>(await client.query(bounded(text, values, timeout, prepared(kind, qo))));
    },
    async copyFrom(table, columns, csv) {
      if (kind === "pglite") return insertCsv(tx, table, columns, csv);
      const sink = client.query(copyFromStdin(copyFromStatement(table, columns, "stdin")));
      await pipeline(csv, sink);
      return sink.rowCount;
    },
    async describe(text, values) {
      const res = await client.query(describeStatement(text), values as unknown[] | undefined);
      return res.fields.map((f) => ({ name: f.name, typeId: f.dataTypeID }));
    },
    stream<T extends Row>(text: string, values?: readonly unknown[], batchSize = 5000) {
      const qs = new QueryStream(text, values as unknown[] | undefined, { batchSize, types } as never);
      return client.query(qs) as unknown as AsyncIterable<T>;
    },
  };
  // Not for PGlite over the wire (it does answer COPY TO STDOUT): the embedded database is
  // small, and keeping it on the cursor path gives both of its ways in the same behaviour.
  if (kind === "postgres") tx.copyTo = (sql) => client.query(copyToStdout(sql));
  return tx;
}

const UNAVAILABLE = new Set([
  "ECONNREFUSED",
  "ENOTFOUND",
  "ETIMEDOUT",
  "ECONNRESET",
  "57P01",
  "57P03",
  "3D000",
]);

/** Connection-level failures become DATABASE_UNAVAILABLE so callers (CLI, HTTP) can answer 1 / 503. */
function rethrow(err: unknown): never {
  const e = err as { code?: string; message?: string };
  const msg = e.message ?? "";
  if (
    (e.code && UNAVAILABLE.has(e.code)) ||
    /timeout expired|Query read timeout|Connection terminated|connect ECONNREFUSED/i.test(msg)
  ) {
    throw new ConnectorError("DATABASE_UNAVAILABLE", `state database unavailable: ${msg || e.code}`, {
      cause: err,
    });
  }
  throw err;
}
