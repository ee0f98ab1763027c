import { describe, expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";
import { canLoadWhileReading } from "../../src/export/sent-load.js";

const db = (kind: Db["kind"]) => ({ kind }) as Db;

describe("loading the sent state while a full reads", () => {
  it("only on PostgreSQL, and only with a state connection to spare beside the held one", () => {
    const state = db("postgres");
    const source = db("postgres");
    expect(canLoadWhileReading({ db: state, source, statePoolSize: 2 })).toBe(true);
    expect(canLoadWhileReading({ db: state, source, statePoolSize: 1 })).toBe(false);
    expect(canLoadWhileReading({ db: state, source })).toBe(false);
    // the source reads through the same pool: its transaction takes one more connection
    expect(canLoadWhileReading({ db: state, source: state, statePoolSize: 2 })).toBe(false);
    expect(canLoadWhileReading({ db: state, source: state, statePoolSize: 3 })).toBe(true);
    const embedded = db("pglite");
    expect(canLoadWhileReading({ db: embedded, source: embedded, statePoolSize: 10 })).toBe(false);
  });
});
