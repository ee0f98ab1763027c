import { createServer, type Server } from "node:net";
import type { PGlite } from "@electric-sql/pglite";
import { PGLiteSocketHandler } from "@electric-sql/pglite-socket";
import type { SessionLock } from "./session-lock.js";

const SYNC = 0x53; // 'S'
const QUERY = 0x51; // 'Q'
const TERMINATE = 0x58; // 'X'
const SYNC_MESSAGE = new Uint8Array([SYNC, 0, 0, 0, 4]);

/** True when, after this message, the backend is ready for another client (unless inside BEGIN). */
function endsCycle(message: Uint8Array): boolean {
  const type = message[0];
  if (type === SYNC || type === QUERY || type === TERMINATE) return true;
  // The startup packet has no type byte: int32 length, then protocol 3.0 (196608).
  return message.length >= 8 && new DataView(message.buffer, message.byteOffset).getInt32(4) === 196608;
}

/**
 * Replaces pglite-socket's query queue, which serialises single messages and so lets two clients'
 * extended-protocol messages or transactions interleave on PGlite's one session. This one hands
 * the session to a client for a whole cycle, using the same lock as in-process queries.
 */
function sessionQueue(pg: PGlite, lock: SessionLock) {
  const gone = new Set<number>();
  return {
    async enqueue(id: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
      await lock.acquire(id);
      if (gone.has(id)) {
        lock.release(id);
        throw new Error("client disconnected");
      }
      let bytes = 0;
      try {
        await pg.runExclusive(() =>
          pg.execProtocolRawStream(message, {
            onRawData: (data) => {
              bytes += data.length;
              onData(data);
            },
          }),
        );
      } finally {
        if (endsCycle(message) && !pg.isInTransaction()) lock.release(id);
      }
      return bytes;
    },
    clearQueueForHandler(id: number) {
      gone.add(id);
    },
    async clearTransactionIfNeeded(id: number) {
      if (lock.owner !== id) return;
      // The client died mid-cycle: end its extended-protocol batch and roll back its transaction.
      await pg.runExclusive(() => pg.execProtocolRawStream(SYNC_MESSAGE, { onRawData: () => undefined }));
      if (pg.isInTransaction()) await pg.exec("rollback");
      lock.release(id);
    },
  };
}

export type WireServer = { port: number; close(): Promise<void> };

/** Serves the embedded database to ordinary `pg` clients (other CLI processes) on 127.0.0.1. */
export async function serveOverWire(pg: PGlite, lock: SessionLock, port = 0): Promise<WireServer> {
  const queue = sessionQueue(pg, lock);
  const sockets = new Set<import("node:net").Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    const handler = new PGLiteSocketHandler({ queryQueue: queue as never, closeOnDetach: true });
    handler.attach(socket).catch(() => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("embedded database server has no TCP address");
  return {
    port: address.port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
