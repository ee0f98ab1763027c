import { describe, expect, it } from "vitest";
import { firstBinaryField } from "../../src/db/binary-copy.js";

// COPY (FORMAT binary) output as PostgreSQL writes it: signature, flags, extension, rows, trailer
const header = (extension = Buffer.alloc(0)) => {
  const h = Buffer.alloc(8);
  h.writeInt32BE(extension.length, 4);
  return Buffer.concat([Buffer.from("PGCOPY\n\xff\r\n\0", "latin1"), h, extension]);
};
const int16 = (n: number) => Buffer.from([(n >> 8) & 0xff, n & 0xff]);
const int32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const row = (field: Buffer | null) =>
  Buffer.concat([int16(1), field ? Buffer.concat([int32(field.length), field]) : int32(-1)]);
const TRAILER = int16(-1);

describe("firstBinaryField", () => {
  it("gives the first row's field as its bytes, past a header extension", () => {
    const field = Buffer.from([0, 1, 2, 255, 0x0a, 0x5c]);
    expect(firstBinaryField(Buffer.concat([header(), row(field), TRAILER]))).toEqual(field);
    expect(firstBinaryField(Buffer.concat([header(Buffer.from("ext")), row(field), TRAILER]))).toEqual(field);
    expect(firstBinaryField(Buffer.concat([header(), row(Buffer.alloc(0)), TRAILER]))).toEqual(
      Buffer.alloc(0),
    );
  });

  it("tells no row (undefined) from a NULL (null)", () => {
    expect(firstBinaryField(Buffer.concat([header(), TRAILER]))).toBeUndefined();
    expect(firstBinaryField(Buffer.concat([header(), row(null), TRAILER]))).toBeNull();
  });

  it("refuses what is not whole binary COPY output", () => {
    expect(() => firstBinaryField(Buffer.from("1\tabc\n"))).toThrow(/signature/);
    const whole = Buffer.concat([header(), row(Buffer.from("abcdef")), TRAILER]);
    expect(() => firstBinaryField(whole.subarray(0, whole.length - 5))).toThrow(/ends inside a field/);
    expect(() => firstBinaryField(Buffer.concat([header(), int16(1), int16(0)]))).toThrow(
      /ends inside a row/,
    );
  });
});
