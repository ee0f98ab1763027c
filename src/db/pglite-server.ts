import { chmod, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import type { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketHandler } from "@electric-sql/pglite-socket";
import { waitAtMost } from "../clock.js";
import { refusedStatement, rewriteQuery, statementText } from "./wire-guard.js";
import type { SessionLock } from "./session-lock.js";

const SYNC = 0x53; // 'S'
const QUERY = 0x51; // 'Q'
const TERMINATE = 0x58; // 'X'
const SYNC_MESSAGE = new Uint8Array([SYNC, 0, 0, 0, 4]);

/** The socket's name in its directory, as libpq and `pg` derive it from `host=<dir>`, port 5432. */
export const SOCKET_NAME = ".s.PGSQL.5432";

/** True when, after this message, the backend is ready for another client (unless inside BEGIN). */
function endsCycle(message: Uint8Array): boolean {
  const type = message[0];
  if (type === SYNC || type === QUERY || type === TERMINATE) return true;
  // The startup packet has no type byte: int32 length, then protocol 3.0 (196608).
  return message.length >= 8 && new DataView(message.buffer, message.byteOffset).getInt32(4) === 196608;
}

export type SessionBounds = {
  /** A client that holds the session (inside BEGIN, or mid-batch) and sends nothing this long is dropped. */
  idleMs: number;
  /** A client that holds the session this long in one go is dropped, busy or not. */
  maxMs: number;
};

export const DEFAULT_SESSION_BOUNDS: SessionBounds = { idleMs: 30_000, maxMs: 10 * 60_000 };

/**
 * Replaces pglite-socket's query queue, which serialises single messages and so lets two clients'
 * extended-protocol messages or transactions interleave on PGlite's one session. This one hands
 * the session to a client for a whole cycle, using the same lock as in-process queries, and takes
 * it back from a client that keeps it too long (PGlite has one session: a client idling inside
 * BEGIN would stall the connector's own queries for ever).
 */
function sessionQueue(pg: PGlite, lock: SessionLock, bounds: SessionBounds, drop: (id: number) => void) {
  const gone = new Set<number>();
  let held: { id: number; since: number; timer: NodeJS.Timeout } | null = null;
  const disarm = () => {
    if (held) clearTimeout(held.timer);
    held = null;
  };
  // Called after each message while `id` keeps the session: (re)starts the idle clock.
  const arm = (id: number) => {
    const since = held?.id === id ? held.since : Date.now();
    disarm();
    const left = Math.min(bounds.idleMs, since + bounds.maxMs - Date.now());
    const timer = setTimeout(
      () => {
        if (lock.owner === id) drop(id);
      },
      Math.max(0, left),
    );
    timer.unref();
    held = { id, since, timer };
  };
  return {
    async enqueue(id: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
      await lock.acquire(id);
      if (gone.has(id)) {
        lock.release(id);
        throw new Error("client disconnected");
      }
      if (held?.id === id) clearTimeout(held.timer);
      const sql = statementText(message);
      const reason = sql === undefined ? null : refusedStatement(sql);
      const toRun = reason ? rewriteQuery(message, reason) : message;
      let bytes = 0;
      try {
        await pg.runExclusive(() =>
          pg.execProtocolRawStream(toRun, {
            onRawData: (data) => {
              bytes += data.length;
              onData(data);
            },
          }),
        );
      } finally {
        if (endsCycle(message) && !pg.isInTransaction()) {
          if (held?.id === id) disarm();
          lock.release(id);
        } else if (lock.owner === id) arm(id);
      }
      return bytes;
    },
    clearQueueForHandler(id: number) {
      gone.add(id);
    },
    async clearTransactionIfNeeded(id: number) {
      if (lock.owner !== id) return;
      if (held?.id === id) disarm();
      // The client died mid-cycle: end its extended-protocol batch and roll back its transaction.
      await pg.runExclusive(() => pg.execProtocolRawStream(SYNC_MESSAGE, { onRawData: () => undefined }));
      if (pg.isInTransaction()) await pg.exec("rollback");
      lock.release(id);
    },
  };
}

export type WireServer = { socketDir: string; close(): Promise<void> };

/** How long closing waits for a client's cycle to end before cutting it (its transaction rolls back). */
const CLOSE_WAIT_MS = 2000;

/**
 * Serves the embedded database to ordinary `pg` clients (other CLI processes) on a Unix socket in
 * `socketDir`, a directory only this OS user can enter: the file system is the access check, so
 * no other local user can connect (there is no TCP port and no password to steal).
 */
export async function serveOverWire(
  pg: PGlite,
  lock: SessionLock,
  socketDir: string,
  bounds: SessionBounds = DEFAULT_SESSION_BOUNDS,
): Promise<WireServer> {
  const sockets = new Map<number, Socket>();
  const queue = sessionQueue(pg, lock, bounds, (id) => sockets.get(id)?.destroy());
  const server: Server = createServer((socket) => {
    const handler = new PGLiteSocketHandler({ queryQueue: queue as never, closeOnDetach: true });
    sockets.set(handler.handlerId, socket);
    socket.on("close", () => sockets.delete(handler.handlerId));
    handler.attach(socket).catch(() => socket.destroy());
  });
  const path = join(socketDir, SOCKET_NAME);
  // A socket left by an owner that was killed; we hold owner.lock, so it is not anyone's.
  await rm(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return {
    socketDir,
    async close() {
      server.close();
      // Take the session between two of a client's cycles, then cut every client: a statement
      // that got no answer was not run, so a client may run it again on the next owner.
      const token = Symbol("closing");
      const acquired = lock.acquire(token);
      await waitAtMost(acquired, CLOSE_WAIT_MS);
      for (const s of sockets.values()) s.destroy();
      await acquired;
      lock.release(token);
      await rm(path, { force: true });
    },
  };
}
