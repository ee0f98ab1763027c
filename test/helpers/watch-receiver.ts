import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** One request as the receiver saw it: from arrival until it answered or the client went away. */
export type Visit = { id: string; n: number; arrived: number; ended: number | null; answered: boolean };

export type WatchReceiver = {
  url: string;
  visits: Visit[];
  /** Requests that arrived while an earlier request of the same message was still open. */
  overlaps(): Visit[];
  close(): Promise<void>;
};

/**
 * A receiver that answers after `delayMs(visit)` and tracks, per webhook-id, whether a request
 * arrives while another of the same message is still open (the sender must never do that: it is
 * the duplicate a receiver cannot tell from two orders).
 */
export async function startWatchReceiver(
  answer: (v: Visit) => { status: number; delayMs: number },
): Promise<WatchReceiver> {
  const visits: Visit[] = [];
  const overlapping: Visit[] = [];
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const id = String(req.headers["webhook-id"]);
    const n = (JSON.parse(Buffer.concat(chunks).toString() || "{}") as { n?: number }).n ?? -1;
    const v: Visit = { id, n, arrived: Date.now(), ended: null, answered: false };
    if (visits.some((o) => o.id === id && o.ended === null)) overlapping.push(v);
    visits.push(v);
    res.on("close", () => (v.ended ??= Date.now()));
    const { status, delayMs } = answer(v);
    const timer = setTimeout(() => {
      v.answered = !res.destroyed;
      res.writeHead(status).end();
    }, delayMs);
    res.on("close", () => clearTimeout(timer));
  };
  const server = createServer((req, res) => void handle(req, res));
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    visits,
    overlaps: () => overlapping,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
