import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).trim().split("\n"));
      done();
    },
  });
  return { destination, lines };
}

describe("logger", () => {
  it("writes JSON lines when the destination is not a TTY", () => {
    const { destination, lines } = capture();
    createLogger({ destination }).info({ rows: 3 }, "snapshot done");
    expect(JSON.parse(lines[0]!)).toMatchObject({
      level: 30,
      rows: 3,
      msg: "snapshot done",
      service: "stock-sync",
    });
  });

  it("never writes tokens, whsec_ secrets or URL passwords", () => {
    const { destination, lines } = capture();
    const log = createLogger({ destination });
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    log.info({ admin_token: "tok-1", headers: { authorization: "Bearer tok-2" } }, "with fields");
    log.info({ url: "postgres://app:hunter2@db:5432/x" }, `secret is ${secret}`);
    log.error({ err: new Error(`connect to postgres://app:hunter2@db failed (${secret})`) }, "boom");
    const text = lines.join("\n");
    for (const leaked of ["tok-1", "tok-2", "hunter2", secret]) expect(text).not.toContain(leaked);
    expect(text).toContain("[redacted]");
  });
});
