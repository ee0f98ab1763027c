import { once } from "node:events";
import { type AddressInfo, createServer, connect as netConnect, type Socket } from "node:net";

export type FreezeProxy = {
  /** A URL like `target` but through this proxy. */
  url: string;
  /**
   * The next connection that sends bytes containing `text` hangs from then on: nothing more is
   * forwarded either way, and nothing is closed (a cut network, not a reset).
   */
  freezeOn(text: string): void;
  frozen(): number;
  close(): Promise<void>;
};

/** A TCP proxy on 127.0.0.1 in front of a PostgreSQL URL, able to hang one connection. */
export async function startFreezeProxy(target: string): Promise<FreezeProxy> {
  const to = new URL(target);
  const sockets = new Set<Socket>();
  let armed: string | null = null;
  let frozen = 0;
  const server = createServer((client) => {
    const upstream = netConnect(Number(to.port || 5432), to.hostname);
    let hung = false;
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => undefined);
    }
    client.on("data", (chunk: Buffer) => {
      if (!hung && armed !== null && chunk.includes(armed)) {
        armed = null;
        hung = true;
        frozen++;
      }
      if (!hung) upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!hung) client.write(chunk);
    });
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  const url = new URL(target);
  url.hostname = "127.0.0.1";
  url.port = String(port);
  return {
    url: url.toString(),
    freezeOn: (text) => {
      armed = text;
    },
    frozen: () => frozen,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

export type StallProxy = {
  /** The proxy's port on 127.0.0.1 (in front of the target port). */
  port: number;
  /**
   * From now on nothing is forwarded either way, on every connection, open or new: the bytes wait
   * in the proxy and nothing is closed (a network that stalls, not one that resets).
   */
  stall(): void;
  /** Forwards what waited, in order, and everything after it. */
  resume(): void;
  /** Connections accepted so far. */
  accepted(): number;
  /** Connections (client side) still open. */
  open(): number;
  close(): Promise<void>;
};

/** A TCP proxy on 127.0.0.1 in front of `port` (an sshd) whose traffic can stall and resume. */
export async function startStallProxy(port: number): Promise<StallProxy> {
  const sockets = new Set<Socket>();
  const held: (() => void)[] = [];
  const clients = new Set<Socket>();
  let accepted = 0;
  let stalled = false;
  const forward = (to: Socket, chunk: Buffer) => {
    if (stalled) held.push(() => to.write(chunk));
    else to.write(chunk);
  };
  const server = createServer((client) => {
    const upstream = netConnect(port, "127.0.0.1");
    accepted++;
    clients.add(client);
    client.on("close", () => clients.delete(client));
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("close", () => sockets.delete(s));
      s.on("error", () => undefined);
    }
    client.on("data", (chunk: Buffer) => forward(upstream, chunk));
    upstream.on("data", (chunk: Buffer) => forward(client, chunk));
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as AddressInfo).port,
    stall: () => {
      stalled = true;
    },
    resume: () => {
      stalled = false;
      for (const write of held.splice(0)) write();
    },
    accepted: () => accepted,
    open: () => clients.size,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
