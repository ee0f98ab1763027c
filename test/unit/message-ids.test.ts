import { describe, expect, it } from "vitest";
import { messageIdFor } from "../../src/inbound/event.js";

describe("messageIdFor", () => {
  it("does not prefix an id that already carries evt_ (the shipped sample event's)", () => {
    expect(messageIdFor("evt_01JD8Z6S2K4")).toBe("evt_01JD8Z6S2K4");
  });

  it("keeps the ids events already stored have", () => {
    expect(messageIdFor("01JD8Z6S2K4")).toBe("evt_01JD8Z6S2K4");
    expect(messageIdFor("order 12/3")).toMatch(/^evh_[A-Za-z0-9_-]{43}$/);
    expect(messageIdFor("x".repeat(201))).toMatch(/^evh_/);
  });
});
