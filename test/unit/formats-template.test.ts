import jsonata from "jsonata";
import { describe, expect, it } from "vitest";
import { compileTemplate, evaluateTemplate } from "../../src/formats/template.js";

// fast-template.ts must give JSONata's output byte for byte wherever it takes over.
const TEMPLATES = [
  '{"type": "inventory", "resources": [rows.{"key": $replace(sku & "--" & location, /[^A-Za-z0-9_-]/, "_"), "sku": sku, "quantityOnStock": quantity, "supplyChannel": {"typeId": "channel", "key": location}}]}',
  '{"action": "UPSERT", "entityType": "INVENTORY", "entities": [rows.{"retailerId": 1, "locationRef": location, "skuRef": sku, "qty": quantity, "correctedQty": 0}]}',
  '{"quantity": quantity, "unlimitedQuantity": false}',
  '{"query": "mutation", "variables": {"input": {"name": "available", "quantities": [rows.{"inventoryItemId": sku, "locationId": location, "quantity": quantity}]}}}',
  'rows.{"s": sku, "missing": nothere, "n": null}',
  '{"e": rows.{"s": sku}, "seq": sequence, "of": parts, "at": taken_at, "q": $string(quantity), "r": $replace(sku, "-", ".")}',
  '[rows.{"s": sku & ":" & quantity}, {"x": 1}]',
  '{"rows": rows}',
];
const rowsOf = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    sku: `SKU-${i}/x`,
    location: `L ${i % 3}`,
    quantity: i * 7,
    record_id: `r${i}`,
  }));
const msg = {
  kind: "full",
  snapshot_id: "full-1",
  sequence: 3,
  part: 1,
  parts: 2,
  taken_at: "2026-12-01T00:00:00.000Z",
};

describe("templates: the fast subset against JSONata", () => {
  it.each(TEMPLATES)("%s", async (text) => {
    const t = compileTemplate(text);
    for (const n of [0, 1, 2, 5]) {
      const rows = rowsOf(n);
      const input = n === 1 ? { ...rows[0], ...msg, rows } : { ...msg, rows };
      const expected = await jsonata(text).evaluate(input);
      if (expected === undefined)
        await expect(evaluateTemplate(t, input)).rejects.toThrow("produced nothing");
      else expect(await evaluateTemplate(t, input)).toBe(JSON.stringify(expected));
    }
  });

  it("the recipes' templates take the fast path; others keep JSONata", () => {
    for (const text of TEMPLATES.slice(0, 4)) expect(compileTemplate(text).fast, text).not.toBeNull();
    expect(compileTemplate("$sum(rows.quantity)").fast).toBeNull();
    expect(compileTemplate('rows[quantity > 3].{"s": sku}').fast).toBeNull();
  });
});
