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
  #rows: Row[] = [];
  #texts: string[] = [];
  #bytes = 0;
  #part = 0;
  #emitted = 0;

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

  async push(row: Row): Promise<void> {
    const { additive, rowsPerMessage, maxBytes } = this.body;
    if (this.#rows.length >= rowsPerMessage) await this.#flush();
    if (!additive) {
      this.#rows.push(row);
      return;
    }
    const msg = this.provisional(this.#part + 1);
    const text = additive.row(row, msg);
    const size = Buffer.byteLength(text) + (this.#rows.length ? additive.sep.length : 0);
    if (maxBytes !== null) {
      const frame = Buffer.byteLength(additive.head(msg)) + Buffer.byteLength(additive.tail(msg));
      if (frame + Buffer.byteLength(text) > maxBytes)
        throw this.#oversize(row, frame + Buffer.byteLength(text));
      if (this.#rows.length && frame + this.#bytes + size > maxBytes)
        return this.#flush().then(() => this.push(row));
    }
    this.#rows.push(row);
    this.#texts.push(text);
    this.#bytes += size;
  }

  /** Emits the last message; a full with no rows still sends one (the OMS sees the full happen). */
  async end(emptyMessage: boolean): Promise<void> {
    if (this.#rows.length || (emptyMessage && this.#emitted === 0)) await this.#flush();
  }

  async #flush(): Promise<void> {
    const rows = this.#rows;
    const texts = this.#texts;
    this.#rows = [];
    this.#texts = [];
    this.#bytes = 0;
    if (this.body.additive) {
      this.#part++;
      const msg = this.provisional(this.#part);
      const a = this.body.additive;
      const body = this.body.late ? null : Buffer.from(a.head(msg) + texts.join(a.sep) + a.tail(msg));
      await this.#out(rows, body);
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
