import { describe, expect, it } from "vitest";
import { refusedStatement, rewriteQuery, statementText } from "../../src/db/wire-guard.js";

const query = (sql: string) => {
  const body = Buffer.from(`${sql}\0`);
  const head = Buffer.from([0x51, 0, 0, 0, 0]);
  head.writeInt32BE(body.length + 4, 1);
  return new Uint8Array(Buffer.concat([head, body]));
};
const parse = (name: string, sql: string, oids: number[]) => {
  const tail = Buffer.alloc(2 + 4 * oids.length);
  tail.writeInt16BE(oids.length, 0);
  for (const [i, o] of oids.entries()) tail.writeInt32BE(o, 2 + 4 * i);
  const body = Buffer.concat([Buffer.from(`${name}\0${sql}\0`), tail]);
  const head = Buffer.from([0x50, 0, 0, 0, 0]);
  head.writeInt32BE(body.length + 4, 1);
  return new Uint8Array(Buffer.concat([head, body]));
};

describe("embedded database wire guard", () => {
  it.each([
    "copy (select 1) to program 'true'",
    "COPY t FROM PROGRAM 'cat /etc/shadow'",
    "copy t to/**/program 'x'",
    "copy t to --\n program 'x'",
    "copy t from '/etc/passwd'",
    "copy t to E'/tmp/x'",
    "select pg_read_file('/etc/passwd')",
    "select * from pg_ls_dir('/')",
    "select lo_import('/etc/passwd')",
    `select U&"\\0070g_read_file"('/x')`,
  ])("refuses %s", (sql) => {
    expect(refusedStatement(sql)).toMatch(/refused on the embedded database/);
  });

  it.each([
    "select 1",
    "copy t (a, b) from stdin with (format csv)",
    "insert into stock_sync.messages (subject) values ('program.updated')",
  ])("lets %s through", (sql) => {
    expect(refusedStatement(sql)).toBeNull();
  });

  it("reads and rewrites Query and Parse messages, keeping the rest of a Parse", () => {
    expect(statementText(query("select 1"))).toBe("select 1");
    const p = parse("s1", "select pg_read_file($1)", [25]);
    expect(statementText(p)).toBe("select pg_read_file($1)");
    const rewritten = rewriteQuery(p, "it's refused");
    expect(statementText(rewritten)).toMatch(/^do \$refused\$ begin raise exception 'it''s refused'/);
    const buf = Buffer.from(rewritten);
    expect(buf.readInt32BE(1)).toBe(buf.length - 1);
    expect(buf.subarray(5, 8).toString()).toBe("s1\0");
    expect([...buf.subarray(-6)]).toEqual([0, 1, 0, 0, 0, 25]);
    expect(statementText(new Uint8Array([0x53, 0, 0, 0, 4]))).toBeUndefined();
  });
});
