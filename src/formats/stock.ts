import { appendFile, mkdir, open } from "node:fs/promises";
import { join } from "node:path";
import { ConnectorError } from "../errors.ts";
import { type CutMessage, Cutter, type RunFields } from "./cut.ts";
import { type MessageFields, type Row, recordId } from "./fields.ts";
import { collector } from "./gc.ts";
import { mapRow, type MapTally, unmappedText } from "./maps.ts";
import type { StockFormat } from "./registry.ts";

/** A subscription's messages for one run, cut and (when final) rendered; kept in memory or in files. */
export type Rendered = {
  format: StockFormat;
  messages: StoredMessage[];
  tally: MapTally;
};

/** A message's body or pending rows, held until the state transaction enqueues it. */
export type StoredMessage = {
  rows: number;
  /** The one row of a rows_per_message: 1 message whose url or headers name row fields. */
  first: Row | null;
  load(): Promise<{ body: Buffer | null; pending: Row[] | null }>;
};

/** Memory for a delta's few rows; files (under a full's temp folder) for a full. */
export type Store = { put(sub: string, i: number, m: CutMessage): Promise<StoredMessage> };

export const memoryStore: Store = {
  put: async (_sub, _i, m) => ({ rows: m.rows, first: m.first, load: async () => m }),
};

/**
 * One append-only file per subscription (a full cut one row per message is a million messages:
 * a file each would be a million files), read back by offset when the message is enqueued.
 */
export function fileStore(dir: string): Store {
  const sizes = new Map<string, number>();
  const rendered = collector(); // bounds a full's garbage (gc.ts)
  return {
    async put(sub, _i, m) {
      const path = join(dir, `bodies-${sub.replace(/[^a-z0-9_.-]/g, "_")}`);
      if (!sizes.has(path)) await mkdir(dir, { recursive: true });
      const data = m.body ?? Buffer.from(JSON.stringify(m.pending));
      rendered(data.length);
      const offset = sizes.get(path) ?? 0;
      await appendFile(path, data);
      sizes.set(path, offset + data.length);
      const final = m.body !== null;
      const length = data.length; // the closure below must not hold the body itself
      return {
        rows: m.rows,
        first: m.first,
        async load() {
          const handle = await open(path, "r");
          try {
            const buf = Buffer.alloc(length);
            await handle.read(buf, 0, buf.length, offset);
            return final
              ? { body: buf, pending: null }
              : { body: null, pending: JSON.parse(buf.toString("utf8")) };
          } finally {
            await handle.close();
          }
        },
      };
    },
  };
}

/**
 * One subscription's messages for a run: rows mapped to the OMS's codes (skips counted, `fail`
 * collects the first unmapped codes and fails the run at the end), record ids added when the
 * body names them, then cut by rows and bytes.
 */
export async function renderFor(
  format: StockFormat,
  run: RunFields,
  rows: AsyncIterable<Row[]>,
  store: Store,
): Promise<Rendered> {
  const tally: MapTally = { skipped: 0, unmapped: [] };
  const messages: StoredMessage[] = [];
  const cutter = new Cutter(
    format.body,
    run,
    async (m) => {
      const keep = format.placeholders && format.body.perRow;
      messages.push(
        await store.put(format.name, messages.length + 1, { ...m, first: keep ? m.first : null }),
      );
    },
    `subscription ${format.name}`,
  );
  const withId = format.body.needsRecordId;
  for await (const batch of rows) {
    for (const row of batch) {
      const mapped = mapRow(row, format.maps, tally);
      if (!mapped) continue;
      // the id is of our key, so a mapping edit does not change it within a snapshot
      if (withId) mapped.record_id = recordId(run.snapshot_id, row.sku, row.location);
      const flushed = cutter.push(mapped);
      if (flushed) await flushed;
    }
  }
  if (tally.unmapped.length) {
    throw new ConnectorError(
      "INVALID_INPUT",
      `subscription ${format.name}: no mapping for ${unmappedText(tally)} (map missing: fail)`,
    );
  }
  await cutter.end(run.kind === "full");
  return { format, messages, tally };
}

/** The body a message is sent with, now that its sequence and the run's parts are known. */
export async function finalBody(r: Rendered, m: StoredMessage, msg: MessageFields): Promise<Buffer> {
  const { body, pending } = await m.load();
  if (body) return body;
  const out = await r.format.body.render(pending!, msg);
  const max = r.format.body.maxBytes;
  if (max !== null && out.length > max)
    throw new Error(
      `subscription ${r.format.name}: part ${msg.part} renders to ${out.length} bytes, over body.max_bytes (${max})`,
    );
  return out;
}

/** "oms-ct: 12 rows skipped (no mapping)" for the run's detail, or null. */
export function skippedText(rendered: readonly Rendered[]): string | null {
  const parts = rendered
    .filter((r) => r.tally.skipped)
    .map((r) => `${r.format.name}: ${r.tally.skipped} rows skipped (no mapping)`);
  return parts.length ? parts.join("; ") : null;
}
