/**
 * Reading `COPY … TO STDOUT (FORMAT binary)` output: a bytea comes as its bytes. The text path
 * `pg` takes for a bytea is hex, twice the size, decoded to a string and then to bytes: ~15–25 ms
 * of CPU for each megabyte of a stock part (issue 13's profile), ~4 with binary COPY.
 */

// "PGCOPY\n\377\r\n\0", then flags (int32) and the header extension's length (int32)
const SIGNATURE = Buffer.from("5047434f50590aff0d0a00", "hex");

/**
 * The first field of the first row of a binary COPY's output (null when it is NULL, undefined
 * when there is no row), as a view into `out`.
 */
export function firstBinaryField(out: Buffer): Buffer | null | undefined {
  if (out.length < SIGNATURE.length + 8 || !out.subarray(0, SIGNATURE.length).equals(SIGNATURE)) {
    throw new Error("not the output of COPY (FORMAT binary): its signature is missing");
  }
  let at = SIGNATURE.length + 4;
  at += 4 + out.readInt32BE(at); // the extension area, skipped
  const fields = readInt16(out, at);
  if (fields === -1) return undefined; // the trailer: no row
  if (fields < 1) throw new Error(`COPY (FORMAT binary) row with ${fields} fields`);
  const len = readInt32(out, at + 2);
  if (len === -1) return null;
  const start = at + 6;
  if (start + len > out.length) throw new Error("COPY (FORMAT binary) output ends inside a field");
  return out.subarray(start, start + len);
}

function readInt16(out: Buffer, at: number): number {
  if (at + 2 > out.length) throw new Error("COPY (FORMAT binary) output ends inside a row");
  return out.readInt16BE(at);
}

function readInt32(out: Buffer, at: number): number {
  if (at + 4 > out.length) throw new Error("COPY (FORMAT binary) output ends inside a row");
  return out.readInt32BE(at);
}
