import { describe, expect, it } from "vitest";
import { captureSql, OPS, triggerName } from "../../src/inventory/capture.js";

describe("capture trigger names", () => {
  const long = "warehouse_stock_levels_for_the_northern_region_";
  it("are unique for long, similar names and fit PostgreSQL's 63 bytes", () => {
    const names = ["a", "b"].flatMap((s) =>
      OPS.map((op) => triggerName({ schema: "shop", name: long + s }, op)),
    );
    expect(new Set(names).size).toBe(8);
    for (const n of names) expect(Buffer.byteLength(n)).toBeLessThanOrEqual(63);
  });

  it("are stable: the same table gets the same names at every install", () => {
    expect(triggerName({ schema: "shop", name: "holds" }, "insert")).toBe(
      triggerName({ schema: "shop", name: "holds" }, "insert"),
    );
    expect(triggerName({ schema: "shop", name: "holds" }, "insert")).toMatch(
      /^stock_sync_shop_holds_[0-9a-f]{10}_insert$/,
    );
  });

  it("tell apart names that differ only by characters a slug drops", () => {
    expect(triggerName({ schema: "s", name: "a-b" }, "update")).not.toBe(
      triggerName({ schema: "s", name: "a_b" }, "update"),
    );
  });

  it("quote the key columns and make functions security definer with a fixed search_path", () => {
    const sql = captureSql(
      [{ table: "shop.holds", schema: "shop", name: "holds", sku: 'S"ku', location: "store" }],
      {
        enableAlways: true,
      },
    );
    expect(sql).toContain('new_rows."S""ku"::text');
    expect(sql).toContain("security definer set search_path = pg_catalog, pg_temp");
    expect(sql.match(/enable always trigger/g)).toHaveLength(4);
  });
});
