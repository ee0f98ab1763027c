import { once } from "node:events";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export type Recorded = {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  at: number;
  /** Set when the request ends: answered, or given up by the sender (a test holding a slot open). */
  endedAt?: number;
};

export type Reply = {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
  delayMs?: number;
  hang?: boolean;
  /** Answers once this settles (a test holding the request open until it says so). */
  until?: Promise<unknown>;
};
export type Responder = (req: Recorded, index: number) => Reply;

/** A real HTTP receiver on 127.0.0.1 that records requests and answers what the test says. */
export type Receiver = {
  url: string;
  requests: Recorded[];
  respond(fn: Responder): void;
  /** Resolves when at least `n` requests arrived. */
  waitFor(n: number, timeoutMs?: number): Promise<Recorded[]>;
  /** Stop accepting connections (the receiver is "down") and start again on the same port. */
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
};

export async function startReceiver(responder: Responder = () => ({ status: 204 })): Promise<Receiver> {
  let respond = responder;
  const requests: Recorded[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const sockets = new Set<import("node:net").Socket>();

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const at = Date.now(); // arrival, before the body is read
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const rec: Recorded = {
      method: req.method ?? "",
      path: req.url ?? "",
      headers: Object.fromEntries(Object.entries(req.headers).map(([k, v]) => [k, String(v)])),
      body: Buffer.concat(chunks),
      at,
    };
    res.on("close", () => {
      rec.endedAt = Date.now();
    });
    const index = requests.push(rec) - 1;
    for (const w of waiters.filter((w) => requests.length >= w.n)) w.resolve();
    const reply = respond(rec, index);
    if (reply.hang) return; // never answers: the sender's timeout must fire
    if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
    if (reply.until) await reply.until.catch(() => undefined);
    res.writeHead(reply.status, reply.headers ?? {});
    res.end(reply.body ?? "");
  };

  let server: Server = createServer(handle);
  const track = (s: Server) =>
    s.on("connection", (socket) => {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
    });
  track(server);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;

  const closeServer = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    respond: (fn) => {
      respond = fn;
    },
    waitFor(n, timeoutMs = 15_000) {
      if (requests.length >= n) return Promise.resolve(requests);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`receiver got ${requests.length} of ${n} requests`)),
          timeoutMs,
        );
        waiters.push({
          n,
          resolve: () => {
            clearTimeout(timer);
            resolve(requests);
          },
        });
      });
    },
    down: closeServer,
    async up() {
      server = createServer(handle);
      track(server);
      server.listen(port, "127.0.0.1");
      await once(server, "listening");
    },
    close: closeServer,
  };
}

/**
 * A port that refuses connections, for "connection refused" tests: below 1024 and outside the
 * ephemeral range (32768-60999), so no test listening on port 0 is ever given it, unlike a port
 * a test opened and closed. Not 9 (discard), which fetch refuses before connecting ("bad port").
 */
export const REFUSED_PORT = 2;
export const REFUSED_URL = `http://127.0.0.1:${REFUSED_PORT}`;
