import type { FastifyBaseLogger } from "fastify";
import { describe, expect, it } from "vitest";
import { lazyRequestLogger } from "../../src/http/request-log.js";
import { capturedLog } from "../helpers/captured-log.js";

describe("lazyRequestLogger", () => {
  it("makes the request's child only when it logs, and its lines carry the request's bindings", async () => {
    const { log, lines } = capturedLog("info");
    let children = 0;
    const parent = log as unknown as FastifyBaseLogger;
    const counting = Object.create(parent, {
      child: {
        value: (...args: Parameters<FastifyBaseLogger["child"]>) => {
          children++;
          return parent.child(...args);
        },
      },
    }) as FastifyBaseLogger;

    const quiet = lazyRequestLogger(counting, { reqId: "req-1" }, {});
    expect(quiet.level).toBe("info");
    quiet.debug("below the level");
    expect(children).toBe(1); // a call makes it (pino decides the level), as fastify's would
    const unused = lazyRequestLogger(counting, { reqId: "req-2" }, {});
    expect(typeof unused.info).toBe("function"); // fastify checks the methods: no child yet
    expect(children).toBe(1);

    const loud = lazyRequestLogger(counting, { reqId: "req-3" }, { level: "warn" });
    expect(loud.level).toBe("warn");
    loud.info("dropped: the child's level is warn");
    loud.warn({ code: 7 }, "aborted mid-body");
    loud.error("twice, one child");
    expect(children).toBe(2);
    await new Promise((r) => setImmediate(r));
    expect(lines.map((l) => [l.reqId, l.msg, l.code])).toEqual([
      ["req-3", "aborted mid-body", 7],
      ["req-3", "twice, one child", undefined],
    ]);
  });
});
