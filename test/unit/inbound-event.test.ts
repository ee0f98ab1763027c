import { describe, expect, it } from "vitest";
import { HttpError } from "../../src/http/errors.js";
import { messageIdFor, parseEvent } from "../../src/inbound/event.js";
import { jsonMediaType } from "../../src/inbound/route.js";

const parse = (body: unknown, headerId?: string, path = "data.order_id") =>
  parseEvent(Buffer.from(typeof body === "string" ? body : JSON.stringify(body)), headerId, path);

const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    if (err instanceof HttpError) return `${err.status} ${err.code}`;
    throw err;
  }
  return "accepted";
};

describe("parseEvent", () => {
  it("builds order.<type> from type, else topic; dots are kept as segments", () => {
    expect(parse({ id: "1", type: "created" }).subject).toBe("order.created");
    expect(parse({ id: "1", topic: "order_state_changed" }).subject).toBe("order.order_state_changed");
    expect(parse({ id: "1", type: "line.cancelled", topic: "x" }).subject).toBe("order.line.cancelled");
    for (const type of ["", "a..b", ".a", "a.", "*", "a b", "ü", 5, null, "x".repeat(101)]) {
      expect([type, refusal(() => parse({ id: "1", type, topic: "ok" }))]).toEqual([
        type,
        "400 invalid_event",
      ]);
    }
  });

  it("takes the id from the body (string or whole number), else the webhook-id header", () => {
    expect(parse({ id: "E-1", type: "t" }, "msg_h").id).toBe("E-1");
    expect(parse({ id: 42, type: "t" }).id).toBe("42");
    expect(parse({ type: "t" }, "msg_h").id).toBe("msg_h");
    expect(parse({ id: null, type: "t" }, "msg_h").id).toBe("msg_h");
    expect(refusal(() => parse({ type: "t" }))).toBe("400 invalid_event");
    for (const id of ["", "\u0000", "a\ud800", 1.5, 2 ** 53, {}, [], true, "x".repeat(257)]) {
      expect([id, refusal(() => parse({ id, type: "t" }, "msg_h"))]).toEqual([id, "400 invalid_event"]);
    }
  });

  it("reads the order id from own properties along the path, else the event id", () => {
    expect(parse({ id: "E", type: "t", data: { order_id: "O-9" } }).orderId).toBe("O-9");
    expect(parse({ id: "E", type: "t", data: { order_id: 9 } }).orderId).toBe("9");
    expect(parse({ id: "E", type: "t" }).orderId).toBe("E");
    expect(parse({ id: "E", type: "t", data: "flat" }).orderId).toBe("E");
    expect(parse({ id: "E", type: "t", a: { b: { c: "deep" } } }, undefined, "a.b.c").orderId).toBe("deep");
    expect(parse({ id: "E", type: "t" }, undefined, "constructor.name").orderId).toBe("E");
    expect(refusal(() => parse({ id: "E", type: "t", data: { order_id: {} } }))).toBe("400 invalid_event");
  });

  it("refuses what is not a UTF-8 JSON object", () => {
    expect(refusal(() => parseEvent(Buffer.from([0x7b, 0xff, 0x7d]), "m", "x"))).toBe("400 invalid_json");
    expect(refusal(() => parse("{"))).toBe("400 invalid_json");
    for (const body of ["[]", "null", "1", '"s"'])
      expect(refusal(() => parse(body))).toBe("400 invalid_event");
  });
});

describe("messageIdFor", () => {
  it("keeps plain ids readable and hashes the rest into a safe webhook-id", () => {
    expect(messageIdFor("E-1_a")).toBe("evt_E-1_a");
    expect(messageIdFor("a.b")).toMatch(/^evh_[A-Za-z0-9_-]{43}$/);
    expect(messageIdFor("a.b")).toBe(messageIdFor("a.b"));
    expect(messageIdFor("x".repeat(201))).toMatch(/^evh_/);
  });
});

describe("jsonMediaType", () => {
  it("accepts JSON in UTF-8 only", () => {
    expect(jsonMediaType("application/json")).toBe("application/json");
    expect(jsonMediaType("Application/JSON; charset=UTF-8")).toBe("application/json");
    expect(jsonMediaType('application/cloudevents+json; charset="utf-8"')).toBe(
      "application/cloudevents+json",
    );
    for (const bad of [
      undefined,
      "",
      "text/json",
      "application/json; charset=latin1",
      "application/jsonp",
      "*/*",
    ]) {
      expect(jsonMediaType(bad)).toBeUndefined();
    }
  });
});
