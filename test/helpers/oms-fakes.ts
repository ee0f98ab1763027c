import type { Recorded } from "./receiver.js";

/**
 * Checks of one request against each OMS's documented shape and limits (written from the public
 * docs cited in docs/destinations.md, never by calling a vendor), returning the stock it sets as
 * (their sku, their location, quantity). A violation throws, naming the vendor's rule.
 */
export type Applied = { sku: string; location: string; quantity: number };
export type OmsFake = (req: Recorded) => Applied[];

function fail(vendor: string, rule: string): never {
  throw new Error(`${vendor}: ${rule}`);
}
const isInt = (v: unknown): v is number => Number.isInteger(v);
const json = (vendor: string, req: Recorded): Record<string, unknown> => {
  if (!req.headers["content-type"]?.startsWith("application/json"))
    fail(vendor, "content-type must be application/json");
  try {
    return JSON.parse(req.body.toString("utf8"));
  } catch {
    return fail(vendor, "body is not JSON");
  }
};
const exactKeys = (vendor: string, o: object, allowed: string[], required = allowed) => {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(vendor, `unknown field "${k}"`);
  for (const k of required) if (!(k in o)) fail(vendor, `missing required field "${k}"`);
};

/** commercetools Import API: InventoryImportRequest, 1..20 resources, key ^[A-Za-z0-9_-]{2,256}$. */
export const commercetools: OmsFake = (req) => {
  const v = "commercetools";
  if (req.method !== "POST" || !/^\/[^/]+\/inventories\/import-containers\/[^/]+$/.test(req.path))
    fail(
      v,
      `expected POST /{projectKey}/inventories/import-containers/{containerKey}, got ${req.method} ${req.path}`,
    );
  const b = json(v, req);
  exactKeys(v, b, ["type", "resources"]);
  if (b.type !== "inventory") fail(v, 'type must be "inventory"');
  const resources = b.resources as Record<string, unknown>[];
  if (!Array.isArray(resources) || resources.length < 1 || resources.length > 20)
    fail(v, "resources: 1 to 20 items");
  return resources.map((r) => {
    exactKeys(
      v,
      r,
      ["key", "sku", "quantityOnStock", "supplyChannel", "restockableInDays", "expectedDelivery"],
      ["key", "sku", "quantityOnStock"],
    );
    if (typeof r.key !== "string" || !/^[A-Za-z0-9_-]{2,256}$/.test(r.key))
      fail(v, `key ${r.key} breaks ^[A-Za-z0-9_-]+$ (2..256)`);
    if (!isInt(r.quantityOnStock)) fail(v, "quantityOnStock must be an integer");
    const ch = r.supplyChannel as { typeId?: string; key?: string };
    if (ch?.typeId !== "channel" || typeof ch.key !== "string")
      fail(v, 'supplyChannel must be {typeId: "channel", key}');
    return { sku: String(r.sku), location: ch.key!, quantity: r.quantityOnStock as number };
  });
};

/** Fluent Commerce Job API batch: {action: UPSERT, entityType: INVENTORY, entities ≤ 5,000}. */
export const fluent: OmsFake = (req) => {
  const v = "fluent";
  if (req.method !== "POST" || !/^\/api\/v4\.1\/job\/[^/]+\/batch$/.test(req.path))
    fail(v, `expected POST /api/v4.1/job/{jobId}/batch, got ${req.path}`);
  const b = json(v, req);
  exactKeys(v, b, ["action", "entityType", "source", "entities"], ["action", "entityType", "entities"]);
  if (b.action !== "UPSERT" || b.entityType !== "INVENTORY") fail(v, "action UPSERT, entityType INVENTORY");
  const entities = b.entities as Record<string, unknown>[];
  if (!Array.isArray(entities) || entities.length < 1 || entities.length > 5000)
    fail(v, "entities: 1 to 5,000 per batch");
  return entities.map((e) => {
    exactKeys(
      v,
      e,
      ["locationRef", "skuRef", "qty", "correctedQty", "retailerId", "type"],
      ["locationRef", "skuRef", "qty"],
    );
    if (!isInt(e.qty) || (e.correctedQty !== undefined && !isInt(e.correctedQty)))
      fail(v, "qty and correctedQty are integers");
    return { sku: String(e.skuRef), location: String(e.locationRef), quantity: e.qty as number };
  });
};

const OCI_MAX_BYTES = 10_000_000; // "10 MB": read as decimal, the stricter reading

/** Salesforce OCI availability-records upload, high-performance NDJSON: one record per line. */
export function salesforceOci(recordIds: Set<string>): OmsFake {
  return (req) => {
    const v = "salesforce oci";
    if (req.method !== "POST" || req.path !== "/commerce/oci/availability-records/uploads")
      fail(v, `expected POST …/uploads, got ${req.path}`);
    const file = fileUpload(v, req);
    if (file.length > OCI_MAX_BYTES) fail(v, `file over 10 MB (${file.length} bytes)`);
    const text = file.toString("utf8");
    if (!text.endsWith("\n")) fail(v, "entries end with a line feed");
    return text
      .slice(0, -1)
      .split("\n")
      .map((line) => {
        const r = JSON.parse(line) as Record<string, unknown>;
        exactKeys(
          v,
          r,
          ["recordId", "location", "sku", "onHand", "effectiveDate", "safetyStockCount", "futures"],
          ["recordId", "location", "sku", "onHand", "effectiveDate"],
        );
        if (typeof r.recordId !== "string" || recordIds.has(r.recordId))
          fail(v, `recordId must be unique (${r.recordId})`);
        recordIds.add(r.recordId);
        if (Number.isNaN(Date.parse(String(r.effectiveDate))))
          fail(v, "effectiveDate must be an ISO date-time");
        if (typeof r.onHand !== "number" || r.onHand < 0) fail(v, "onHand is a number ≥ 0");
        return { sku: String(r.sku), location: String(r.location), quantity: r.onHand };
      });
  };
}

/**
 * OCI's upload takes the NDJSON as the `fileUpload` part of a multipart/form-data body (the
 * Connect API's documented request): the one part, with a file name, parsed by its boundary.
 */
function fileUpload(v: string, req: Recorded): Buffer {
  const m = /^multipart\/form-data;\s*boundary=("?)([^";]+)\1$/i.exec(req.headers["content-type"] ?? "");
  if (!m) fail(v, `expected multipart/form-data with a boundary, got ${req.headers["content-type"]}`);
  const boundary = m![2]!;
  const text = req.body.toString("latin1");
  const open = `--${boundary}\r\n`;
  const close = `\r\n--${boundary}--\r\n`;
  if (!text.startsWith(open) || !text.endsWith(close)) fail(v, "one part between the boundaries");
  const inner = text.slice(open.length, -close.length);
  if (inner.includes(`--${boundary}`)) fail(v, "exactly one part");
  const split = inner.indexOf("\r\n\r\n");
  const headers = inner.slice(0, split);
  if (!/^content-disposition: form-data; name="fileUpload"; filename="[^"]+"/im.test(headers))
    fail(v, `the part is form field fileUpload with a file name, got ${headers}`);
  return Buffer.from(inner.slice(split + 4), "latin1");
}

/** VTEX logistics: PUT /api/logistics/pvt/inventory/skus/{skuId}/warehouses/{warehouseId} {quantity, unlimitedQuantity}. */
export const vtex: OmsFake = (req) => {
  const v = "vtex";
  const m = /^\/api\/logistics\/pvt\/inventory\/skus\/([^/]+)\/warehouses\/([^/]+)$/.exec(req.path);
  if (req.method !== "PUT" || !m)
    fail(v, `expected PUT …/skus/{skuId}/warehouses/{warehouseId}, got ${req.method} ${req.path}`);
  const b = json(v, req);
  exactKeys(v, b, ["quantity", "unlimitedQuantity", "dateUtcOnBalanceSystem"], ["quantity"]);
  if (!isInt(b.quantity) || b.quantity < 0) fail(v, "quantity is an integer ≥ 0");
  if (b.unlimitedQuantity !== undefined && typeof b.unlimitedQuantity !== "boolean")
    fail(v, "unlimitedQuantity is a boolean");
  return [{ sku: decodeURIComponent(m[1]!), location: decodeURIComponent(m[2]!), quantity: b.quantity }];
};

const GID = (type: string) => new RegExp(`^gid://shopify/${type}/\\d+$`);
const SHOPIFY_MAX = 250;

/** Shopify Admin GraphQL inventorySetQuantities: absolute "available" quantities keyed by GIDs. */
export const shopify: OmsFake = (req) => {
  const v = "shopify";
  if (req.method !== "POST" || !/^\/admin\/api\/\d{4}-\d{2}\/graphql\.json$/.test(req.path))
    fail(v, `expected POST /admin/api/{version}/graphql.json, got ${req.path}`);
  const b = json(v, req) as { query?: string; variables?: { input?: Record<string, unknown> } };
  exactKeys(v, b, ["query", "variables"]);
  if (
    !/mutation\s+\w*\s*\(\s*\$input:\s*InventorySetQuantitiesInput!\s*\)\s*\{\s*inventorySetQuantities\(input:\s*\$input\)/.test(
      b.query ?? "",
    )
  )
    fail(
      v,
      "query must call inventorySetQuantities(input: $input) with $input: InventorySetQuantitiesInput!",
    );
  const input = b.variables?.input ?? fail(v, "variables.input is required");
  exactKeys(
    v,
    input,
    ["name", "reason", "referenceDocumentUri", "ignoreCompareQuantity", "quantities"],
    ["name", "reason", "quantities"],
  );
  if (!["available", "on_hand"].includes(String(input.name))) fail(v, 'name is "available" or "on_hand"');
  const q = input.quantities as Record<string, unknown>[];
  if (!Array.isArray(q) || q.length < 1 || q.length > SHOPIFY_MAX) fail(v, `quantities: 1 to ${SHOPIFY_MAX}`);
  return q.map((e) => {
    exactKeys(
      v,
      e,
      ["inventoryItemId", "locationId", "quantity", "compareQuantity"],
      ["inventoryItemId", "locationId", "quantity"],
    );
    if (!GID("InventoryItem").test(String(e.inventoryItemId)))
      fail(v, "inventoryItemId is a gid://shopify/InventoryItem/…");
    if (!GID("Location").test(String(e.locationId))) fail(v, "locationId is a gid://shopify/Location/…");
    if (!isInt(e.quantity)) fail(v, "quantity is an integer");
    return { sku: String(e.inventoryItemId), location: String(e.locationId), quantity: e.quantity as number };
  });
};
