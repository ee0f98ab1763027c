import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config/index.js";
import { ConnectorError } from "../../src/errors.js";
import { columnProblems, wholeQuantity } from "../../src/export/quantity.js";
import { bindUsed } from "../../src/inventory/params.js";
import { sourceQueries } from "../../src/inventory/queries.js";

const configError = (yaml: string) => {
  try {
    loadConfig(yaml, {});
  } catch (err) {
    expect((err as ConnectorError).code).toBe("CONFIG_INVALID");
    return (err as Error).message;
  }
  throw new Error("expected a CONFIG_INVALID error");
};

// Issue 12.8: newcomer traps with one's own schema.
describe("source queries for one's own schema", () => {
  it("binds only the parameters a query uses, renumbered", () => {
    expect(bindUsed("select sku, store as location, qty as quantity from shop.stock_levels", [7])).toEqual({
      text: "select sku, store as location, qty as quantity from shop.stock_levels",
      values: [],
    });
    expect(
      bindUsed("select * from t where sku = any($2::text[]) and loc = any($3)", [7, ["a"], ["b"]]),
    ).toEqual({
      text: "select * from t where sku = any($1::text[]) and loc = any($2)",
      values: [["a"], ["b"]],
    });
    // Placeholders in literals, quoted names, comments and dollar quotes are not placeholders.
    const sql = `select '$1', "a$1", $$ $2 $$, $f$ $3 $f$ -- $1\n /* $2 /* $3 */ */ , $3 from x`;
    expect(bindUsed(sql, [1, 2, 3])).toEqual({ text: sql.replace(", $3 from", ", $1 from"), values: [3] });
    expect(
      bindUsed(
        "select $1, $1 + $10",
        Array.from({ length: 10 }, (_, i) => i + 1),
      ),
    ).toEqual({
      text: "select $1, $1 + $2",
      values: [1, 10],
    });
  });

  it("strips a trailing ; (and blanks) from configured queries", () => {
    const q = sourceQueries({
      sellable: "select 1 ;\n",
      sellable_keys: "select 2;; ",
      time_candidates: "none;",
    });
    expect(q).toEqual({
      sellable: "select 1",
      sellableKeys: "select 2",
      sellableMatching:
        "select * from (select 1\n) s where s.sku = any($2::text[]) or s.location = any($3::text[])",
      timeCandidates: null,
    });
    const matching = sourceQueries({
      sellable: "select 1",
      sellable_keys: "select 2",
      time_candidates: "none",
      sellable_matching: "select 3 ;\n",
    });
    expect(matching.sellableMatching).toBe("select 3");
  });

  it("refuses a partial override of stock.queries at config check", () => {
    const message = configError(
      'stock: { queries: { sellable: "select sku, store as location, qty as quantity from shop.s" } }',
    );
    expect(message).toMatch(/^stock\.queries\.sellable_keys: set all three stock\.queries/);
    expect(message).toMatch(/stock\.queries\.time_candidates: set all three/);
    expect(message).toMatch(/reference schema's \(inventory\.\*\)/);
    expect(() =>
      loadConfig(
        'stock: { queries: { sellable: "select 1", sellable_keys: "select 2", time_candidates: none } }',
        {},
      ),
    ).not.toThrow();
  });
});

// Issue 17.7: CSV columns.
describe("CSV columns", () => {
  it("requires sku, location and quantity", () => {
    expect(configError("stock: { format: { columns: [sku, quantity] } }")).toBe(
      "stock.format.columns: must include sku, location and quantity; missing location",
    );
  });

  it("names a column the query does not return, and a quantity that is not a number", () => {
    const result = [
      { name: "sku", typeId: 25 },
      { name: "location", typeId: 25 },
      { name: "quantity", typeId: 1700 },
    ];
    expect(columnProblems("stock.queries.sellable", result, ["sku", "location", "quantity"])).toEqual([]);
    expect(
      columnProblems("stock.queries.sellable", result, ["sku", "location", "quantity", "warehouse"]),
    ).toEqual([
      'stock.format.columns lists "warehouse", but stock.queries.sellable has no column "warehouse" (its columns: sku, location, quantity)',
    ]);
    const text = result.map((c) => (c.name === "quantity" ? { ...c, typeId: 25 } : c));
    expect(columnProblems("stock.queries.sellable", text, ["sku", "location", "quantity"])[0]).toMatch(
      /^stock\.queries\.sellable returns quantity as text: quantities are whole numbers/,
    );
  });
});

// Issue 12.7: one quantity type, one text form.
describe("quantities", () => {
  const row = { sku: "A1", location: "S1" };
  it("are whole numbers: numeric text with a zero fraction is the integer", () => {
    expect(wholeQuantity("10.000", "q", row)).toBe(10);
    expect(wholeQuantity("-0.000", "q", row)).toBe(0);
    expect(wholeQuantity(3, "q", row)).toBe(3);
    expect(wholeQuantity("42", "q", row)).toBe(42);
  });
  it("a fractional value fails naming the query and the key", () => {
    expect(() => wholeQuantity("2.500", "stock.queries.sellable", row)).toThrow(
      /^stock\.queries\.sellable returned quantity 2\.500 for A1 at S1: quantities are whole numbers/,
    );
    expect(() => wholeQuantity(2.5, "q", row)).toThrow(ConnectorError);
    expect(() => wholeQuantity("abc", "q", row)).toThrow(ConnectorError);
  });
});
