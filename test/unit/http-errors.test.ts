import { Writable } from "node:stream";
import Fastify from "fastify";
import { describe, expect, it } from "vitest";
import { ConnectorError } from "../../src/errors.js";
import { describeError, HttpError, installErrorHandlers } from "../../src/http/errors.js";
import { createLogger } from "../../src/log.js";

const mapped = (err: unknown) => {
  const { error, log } = describeError(err);
  return { status: error.status, code: error.code, log };
};

describe("describeError", () => {
  it("maps outages, known codes and fastify's client errors; everything else is a logged 500", () => {
    const pg = (code: string, message = "x") => Object.assign(new Error(message), { code });
    expect(mapped(new ConnectorError("DATABASE_UNAVAILABLE", "down"))).toEqual({
      status: 503,
      code: "database_unavailable",
      log: "warn",
    });
    for (const err of [
      pg("57P01"),
      pg("08006"),
      pg("ECONNREFUSED"),
      pg("55000", 'database "x" is not currently accepting connections'),
      new Error("Connection terminated unexpectedly"),
    ]) {
      expect(mapped(err).status).toBe(503);
    }
    expect(describeError(pg("57P01")).error.headers).toEqual({ "retry-after": "5" });
    expect(mapped(new ConnectorError("NOT_FOUND", "no"))).toMatchObject({ status: 404, code: "not_found" });
    expect(mapped(new HttpError(409, "c", "d"))).toMatchObject({ status: 409, code: "c" });
    expect(mapped(Object.assign(new Error("big"), { statusCode: 413 }))).toMatchObject({
      status: 413,
      code: "payload_too_large",
    });
    expect(mapped(pg("23505"))).toEqual({ status: 500, code: "internal", log: "error" });
    expect(mapped(new ConnectorError("CONFIG_INVALID", "x"))).toMatchObject({ status: 500 });
  });

  it("answers a 500 with no detail of the cause, and logs the cause without secrets", async () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const log = createLogger({ destination, format: "json" });
    const app = Fastify();
    installErrorHandlers(app, log);
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    app.get("/boom", async () => {
      throw new Error(`exploded near ${secret}`);
    });
    const res = await app.inject({ method: "GET", url: "/boom", headers: { authorization: "Bearer t0k" } });
    expect(res.statusCode).toBe(500);
    expect(res.json()).toEqual({ code: "internal", detail: expect.any(String) });
    expect(res.body).not.toContain("exploded");
    const text = lines.join("");
    expect(text).toContain("exploded near");
    for (const leaked of [secret, "t0k"]) expect(text).not.toContain(leaked);
    await app.close();
  });
});
