/**
 * What the sftp:// tests read on the server's side: the folder as an importer polling it sees it
 * (dotfiles skipped), and the files the outbox holds for a subscription, by the name each gets.
 */
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import type { Db } from "../../src/db/db.js";
import type { DeliveryRow } from "../../src/outbox/queries.js";
import { fileName } from "../../src/outbox/request.js";

export type DropWatch = {
  /** Visible names in the order they first appeared. */
  seen: string[];
  /** Visible files whose size was not (yet) the whole file's: must stay empty. */
  partial: string[];
  /** Whether any poll saw a set of names that is not a prefix of `order` (sorted expected names). */
  outOfOrder(order: string[]): string[][];
  stop(): Promise<void>;
};

/**
 * Polls `dir` like an importer that skips dotfiles, every few ms, until stopped: each visible
 * file's size is checked against `sizeOf(name)` (undefined = not known to the test: skipped).
 */
export function watchDrop(
  dir: string,
  sizeOf: (name: string) => number | readonly number[] | undefined,
): DropWatch {
  const seen: string[] = [];
  const partial: string[] = [];
  const polls: string[][] = [];
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => !n.startsWith(".")).sort();
      polls.push(names);
      for (const n of names) {
        if (!seen.includes(n)) seen.push(n);
        const want = sizeOf(n);
        if (want === undefined) continue;
        const whole = typeof want === "number" ? [want] : want;
        const size = await stat(join(dir, n)).then(
          (s) => s.size,
          () => whole[0], // renamed over meanwhile: the next poll looks again
        );
        if (!whole.includes(size!)) partial.push(`${n}: ${size} of ${whole.join(" or ")} bytes`);
      }
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  return {
    seen,
    partial,
    outOfOrder: (order) => polls.filter((names) => names.some((n, i) => order[i] !== n)),
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** The files a subscription's deliveries become, in delivery order: name and exact bytes. */
export async function expectedFiles(db: Db, subscription: string): Promise<{ name: string; body: Buffer }[]> {
  const { rows } = await db.query<DeliveryRow & { payload: Uint8Array }>(
    `select d.id, d.sequence, m.id as message_id, m.subject, m.content_type, m.headers, m.payload
     from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
     where d.subscription = $1 and d.status <> 'superseded' order by d.sequence nulls last, d.id`,
    [subscription],
  );
  return rows.map((r) => ({ name: fileName(r), body: Buffer.from(r.payload) }));
}

/** The visible files of `dir` and their bytes. */
export async function dropContents(dir: string): Promise<Map<string, Buffer>> {
  const names = (await readdir(dir)).filter((n) => !n.startsWith("."));
  return new Map(await Promise.all(names.map(async (n) => [n, await readFile(join(dir, n))] as const)));
}
