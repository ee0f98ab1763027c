import type { PGlite } from "@electric-sql/pglite";
import {
  beginStatement,
  copyFromStatement,
  type Db,
  describeStatement,
  type Queryable,
  type Row,
  type Tx,
} from "./db.js";
import type { SessionLock } from "./session-lock.js";

type Result<T> = { rows: T[]; rowCount: number };

/** Parameterless text may hold several statements (migrations); `exec` runs those, as `pg` does. */
async function run<T extends Row>(pg: PGlite, text: string, values?: readonly unknown[]): Promise<Result<T>> {
  if (!values || values.length === 0) {
    const results = await pg.exec(text);
    const last = results[results.length - 1];
    return { rows: (last?.rows ?? []) as T[], rowCount: last?.affectedRows || last?.rows.length || 0 };
  }
  const res = await pg.query<T>(text, values as unknown[]);
  return { rows: res.rows, rowCount: res.affectedRows || res.rows.length };
}

let cursorSeq = 0;

function pgliteTx(pg: PGlite): Tx {
  const query: Queryable["query"] = (text, values) => run(pg, text, values);
  return {
    query,
    async *stream<T extends Row>(text: string, values?: readonly unknown[], batchSize = 5000) {
      const name = `stock_sync_cursor_${++cursorSeq}`;
      await pg.query(`declare ${name} no scroll cursor for ${text}`, (values ?? []) as unknown[]);
      try {
        for (;;) {
          const { rows } = await pg.query<T>(`fetch forward ${batchSize} from ${name}`);
          yield* rows;
          if (rows.length < batchSize) break;
        }
      } finally {
        await pg.query(`close ${name}`).catch(() => undefined);
      }
    },
    async copyFrom(table, columns, csv) {
      const chunks: Buffer[] = [];
      for await (const chunk of csv) chunks.push(chunk);
      const blob = new Blob(chunks);
      const res = await pg.query(copyFromStatement(table, columns, "'/dev/blob'"), [], { blob });
      return res.affectedRows ?? 0;
    },
    async describe(text, values) {
      const res = await pg.query(describeStatement(text), (values ?? []) as unknown[]);
      return res.fields.map((f) => ({ name: f.name, typeId: f.dataTypeID }));
    },
  };
}

/** A `Db` over a PGlite instance in this process; `lock` is shared with the wire-protocol server. */
export function pgliteDb(pg: PGlite, lock: SessionLock, onClose: () => Promise<void>): Db {
  return {
    kind: "pglite",
    query: (text, values) => lock.run(() => run(pg, text, values)),
    tx(fn, opts) {
      return lock.run(async () => {
        await pg.exec(beginStatement(opts));
        try {
          const result = await fn(pgliteTx(pg));
          await pg.exec("commit");
          return result;
        } catch (err) {
          await pg.exec("rollback");
          throw err;
        }
      });
    },
    // NOTIFY from any in-process query reaches these listeners after its transaction commits.
    async listen(channel, onPayload) {
      const unlisten = await lock.run(() => pg.listen(channel, onPayload));
      return () => lock.run(() => unlisten());
    },
    close: onClose,
  };
}
