import { existsSync } from "node:fs";
import { afterAll, expect, it } from "vitest";
import type { Db } from "../../src/db/db.js";

const made: string[] = [];
// Registered before the helper is imported: after* hooks run in reverse order, so this runs last.
afterAll(() => {
  expect(made.length).toBeGreaterThan(0);
  expect(made.filter((dir) => existsSync(dir))).toEqual([]);
});
const { STOCK_SUB, stockFixture } = await import("../helpers/stock.js");

it("the stock fixtures' temp folders are removed when the test file ends", async () => {
  // no source is read: a state database that only answers is enough to build the exporter
  const db = { query: async () => ({ rows: [], rowCount: 0 }) } as unknown as Db;
  const fx = await stockFixture(db, STOCK_SUB, { seed: false });
  made.push(fx.deps.tmpDir);
  expect(existsSync(fx.deps.tmpDir)).toBe(true);
});
