import { type MessageFields, type Row, WIDEST_LATE } from "./fields.ts";
import type { StockBody } from "./render.ts";

/** One message as cut: its body when final already, else its rows, rendered once sequence and parts are known. */
export type CutMessage = { rows: number; body: Buffer | null; pending: Row[] | null; first: Row | null };

export type RunFields = Pick<MessageFields, "kind" | "snapshot_id" | "taken_at">;

/** A row that cannot fit in any message: the run fails naming it (never a silent drop). */
export class OversizeRowError extends Error {}

/**
 * Cuts a run's rows into messages of at most `rowsPerMessage` rows and `maxBytes` bytes, in
 * order, handing each to `emit` as soon as it is complete (a full never sits in memory). Sizes
 * are measured with the widest sequence and parts a message can get, so the real ones fit too.
 */
export class Cutter {
  // rows are kept only where they are rendered again (templates, late bodies); else a count
  #rows: Row[] = [];
  #count = 0;
  #first: Row | null = null;
  #texts: string[] = [];
  #bytes = 0;
  #part = 0;
  #emitted = 0;
  // the provisional fields and frame of the message being filled, made once per message
  #msg: MessageFields | null = null;
  #frame = 0;

  constructor(
    private readonly body: StockBody,
    private readonly run: RunFields,
    private readonly emit: (m: CutMessage) => Promise<void>,
    private readonly label: string,
  ) {}

  get messages(): number {
    return this.#emitted;
  }

  /** The fields a message is measured with before its sequence and parts are known. */
  provisional(part: number): MessageFields {
    return {
      ...this.run,
      sequence: WIDEST_LATE,
      part: this.body.late ? WIDEST_LATE : part,
      parts: WIDEST_LATE,
    };
  }

  /**
   * Takes one row; a promise only when a message was completed (await it before the next row).
   * Synchronous otherwise: an async call per row cost more than rendering it.
   */
  push(row: Row): Promise<void> | undefined {
    if (this.#count >= this.body.rowsPerMessage) return this.#flush().then(() => this.push(row));
    const { additive, maxBytes, late } = this.body;
    if (!additive) {
      this.#rows.push(row);
      this.#count++;
      return undefined;
    }
    if (!this.#msg) {
      this.#msg = this.provisional(this.#part + 1);
      this.#frame = Buffer.byteLength(additive.head(this.#msg)) + Buffer.byteLength(additive.tail(this.#msg));
    }
    const text = additive.row(row, this.#msg);
    if (maxBytes !== null) {
      const bytes = Buffer.byteLength(text);
      if (this.#frame + bytes > maxBytes) throw this.#oversize(row, this.#frame + bytes);
      const size = bytes + (this.#count ? additive.sep.length : 0);
      if (this.#count && this.#frame + this.#bytes + size > maxBytes)
        return this.#flush().then(() => this.push(row));
      this.#bytes += size;
    }
    if (late) this.#rows.push(row);
    else if (!this.#count) this.#first = row;
    this.#count++;
    this.#texts.push(text);
    return undefined;
  }

  /** Emits the last message; a full with no rows still sends one (the OMS sees the full happen). */
  async end(emptyMessage: boolean): Promise<void> {
    if (this.#count || (emptyMessage && this.#emitted === 0)) await this.#flush();
  }

  async #flush(): Promise<void> {
    const rows = this.#rows;
    const texts = this.#texts;
    const count = this.#count;
    const first = this.#first;
    this.#rows = [];
    this.#texts = [];
    this.#count = 0;
    this.#first = null;
    this.#bytes = 0;
    this.#msg = null;
    if (this.body.additive) {
      this.#part++;
      const msg = this.provisional(this.#part);
      const a = this.body.additive;
      if (this.body.late) return this.#out(rows, null);
      this.#emitted++;
      const body = Buffer.from(a.head(msg) + texts.join(a.sep) + a.tail(msg));
      await this.emit({ rows: count, body, pending: null, first });
    } else await this.#split(rows);
  }

  /** A template's message over max_bytes is halved until each half fits; one row that does not is an error. */
  async #split(rows: Row[]): Promise<void> {
    const body = await this.body.render(rows, this.provisional(this.#part + 1));
    if (this.body.maxBytes === null || body.length <= this.body.maxBytes) {
      this.#part++;
      return this.#out(rows, this.body.late ? null : body);
    }
    if (rows.length === 1) throw this.#oversize(rows[0]!, body.length);
    const half = Math.ceil(rows.length / 2);
    await this.#split(rows.slice(0, half));
    await this.#split(rows.slice(half));
  }

  async #out(rows: Row[], body: Buffer | null): Promise<void> {
    this.#emitted++;
    await this.emit({ rows: rows.length, body, pending: body ? null : rows, first: rows[0] ?? null });
  }

  #oversize(row: Row, bytes: number): OversizeRowError {
    return new OversizeRowError(
      `${this.label}: the row sku "${row.sku}", location "${row.location}" alone renders to ${bytes} bytes, over body.max_bytes (${this.body.maxBytes})`,
    );
  }
}
