import { once } from "node:events";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Socket } from "node:net";

/** One request as the receiver saw it; `at` is performance.now() when its headers arrived. */
export type Arrival = {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  at: number;
};

export type Sink = {
  url: string;
  port: number;
  /** Requests since the last reset (bodies only when `keep` asked for them). */
  readonly count: number;
  readonly arrivals: Arrival[];
  reset(): void;
  /** Resolves when `n` requests arrived since the last reset. */
  waitFor(n: number, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
};

/**
 * A minimal HTTP receiver on 127.0.0.1:0 answering 204, lighter than test/helpers/receiver.ts:
 * 50,000 requests must not cost the benchmark process more than the system under test.
 * `keep: "none"` only counts; "meta" keeps arrival times and headers; "all" keeps bodies too.
 */
export async function startSink(opts: { keep?: "none" | "meta" | "all"; port?: number } = {}): Promise<Sink> {
  const keep = opts.keep ?? "meta";
  let arrivals: Arrival[] = [];
  let count = 0;
  let waiter: { n: number; resolve: () => void } | null = null;
  const sockets = new Set<Socket>();
  const empty = Buffer.alloc(0);

  const server: Server = createServer((req, res) => {
    const at = performance.now();
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => {
      if (keep === "all") chunks.push(c);
    });
    req.on("end", () => {
      count++;
      if (keep !== "none") {
        const body = keep === "all" ? Buffer.concat(chunks) : empty;
        arrivals.push({ method: req.method ?? "", path: req.url ?? "", headers: req.headers, body, at });
      }
      res.writeHead(204).end();
      if (waiter && count >= waiter.n) waiter.resolve();
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.keepAliveTimeout = 60_000;
  server.listen(opts.port ?? 0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    get count() {
      return count;
    },
    get arrivals() {
      return arrivals;
    },
    reset() {
      count = 0;
      arrivals = [];
    },
    waitFor(n, timeoutMs) {
      if (count >= n) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = null;
          reject(new Error(`receiver got ${count} of ${n} requests in ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = {
          n,
          resolve: () => {
            clearTimeout(timer);
            waiter = null;
            resolve();
          },
        };
      });
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** A port that was free a moment ago, for two servers that must take turns on the same port. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
