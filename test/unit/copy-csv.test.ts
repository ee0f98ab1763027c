import { writeToBuffer } from "@fast-csv/format";
import { describe, expect, it } from "vitest";
import {
  CopyRows,
  copyable,
  copyStatement,
  csvField,
  csvHeader,
  parseCopyRow,
} from "../../src/export/copy-csv.js";

// What PostgreSQL's COPY … (FORMAT csv) writes for these values (checked against a server by
// the integration test "COPY and cursor parts are the same bytes"), and the values.
const cases: [copy: string, values: string[]][] = [
  ["a,b,1", ["a", "b", "1"]],
  ['"x,y","say ""hi""",2', ["x,y", 'say "hi"', "2"]],
  ['"line\nbreak","cr\rhere",3', ["line\nbreak", "cr\rhere", "3"]],
  ['pipe|x,"",4', ["pipe|x", "", "4"]],
  [",,5", ["", "", "5"]],
  ['"\\.",ü ,-6', ["\\.", "ü ", "-6"]],
];

describe("COPY rows made fast-csv rows", () => {
  it("csvField and csvHeader quote exactly as @fast-csv/format", async () => {
    const values = [...cases.flatMap(([, v]) => v), "a|b", " lead", "tab\there", "\r", "\\."];
    for (const v of values) {
      const fast = (await writeToBuffer([[v]], { headers: false })).toString();
      expect(csvField(v)).toBe(fast);
    }
    const columns = ["sku", "loc,ation", 'q"ty', "a|b"];
    const header = await writeToBuffer([], {
      headers: columns,
      alwaysWriteHeaders: true,
      includeEndRowDelimiter: true,
    });
    expect(csvHeader(columns)).toBe(header.toString());
  });

  it("parseCopyRow reads COPY's quoting back", () => {
    for (const [copy, values] of cases) expect(parseCopyRow(copy)).toEqual(values);
  });

  it("cuts chunks split anywhere into whole rows, re-quoting only rows fast-csv writes differently", async () => {
    const copy = Buffer.from(cases.map(([c]) => `${c}\n`).join(""));
    const rows = cases.map(([, v]) => v);
    const expected = await writeToBuffer(rows, { headers: false, includeEndRowDelimiter: true });
    for (const size of [1, 2, 3, 5, 8, 13, 64, copy.length]) {
      const cutter = new CopyRows();
      const out: Buffer[] = [];
      let count = 0;
      for (let i = 0; i < copy.length; i += size) {
        const { data, ends } = cutter.push(copy.subarray(i, i + size));
        expect(ends.at(-1) ?? 0).toBe(data.length);
        // Every end is just after a newline, in order.
        expect(ends.map((e) => data[e - 1])).toEqual(ends.map(() => 0x0a));
        expect(ends).toEqual([...ends].sort((a, b) => a - b));
        count += ends.length;
        out.push(data);
      }
      cutter.end();
      expect(count).toBe(cases.length);
      expect(Buffer.concat(out).toString()).toBe(expected.toString());
    }
  });

  it("passes rows with nothing to re-quote through as the same bytes", () => {
    const chunk = Buffer.from("a,b,1\nc,d,2\n");
    const { data, ends } = new CopyRows().push(chunk);
    expect(data.equals(chunk)).toBe(true);
    expect(ends).toEqual([6, 12]);
  });

  it("refuses output that ends inside a row", () => {
    const cutter = new CopyRows();
    cutter.push(Buffer.from('a,"b\n'));
    expect(() => cutter.end()).toThrow(/inside a row/);
  });
});

describe("when the COPY path applies", () => {
  const col = (name: string, typeId: number) => ({ name, typeId });
  const keys = [col("sku", 25), col("location", 1043), col("quantity", 23)];

  it("needs every configured column once, of a type whose text fast-csv prints the same", () => {
    expect(copyable(keys, ["sku", "location", "quantity"])).toBe(true);
    expect(copyable([...keys, col("big", 20), col("price", 1700)], ["price", "sku", "big"])).toBe(true);
    expect(copyable([...keys, col("weight", 701)], ["sku", "weight"])).toBe(false); // float8
    expect(copyable([...keys, col("active", 16)], ["sku", "active"])).toBe(false); // bool: t vs true
    expect(copyable(keys, ["sku", "missing"])).toBe(false);
    expect(copyable([...keys, col("sku", 25)], ["sku"])).toBe(false);
  });

  it("writes include_future_days into the statement (COPY takes no parameters)", () => {
    expect(copyStatement("select * from s where d <= $1::int and n < $10", ["sku", 'we"ird'], 3)).toBe(
      'copy (select "sku", "we""ird" from (select * from s where d <= (3)::int and n < $10\n) as s) to stdout with (format csv)',
    );
    expect(() => copyStatement("select $1", ["sku"], 1.5)).toThrow(/integer/);
  });
});
