import type { Recorded, Reply } from "./receiver.js";

/**
 * OMSs that accept an import and apply it later (issue 15), as responders for a real receiver
 * on 127.0.0.1. Each keeps what it applied and what it rejected, so tests compare with the source.
 */
export type JobFake = {
  respond: (req: Recorded, index: number) => Reply;
  /** sku|location -> quantity, for records the OMS applied. */
  applied: Map<string, number>;
  /** What each request did, in arrival order ("open J1", "batch J1/B1", "poll B1 RUNNING", …). */
  log: string[];
};

const json = (status: number, body: unknown): Reply => ({
  status,
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body),
});

/**
 * A bad day at the OMS: `fail()` true answers 500 before the request does anything (the caller
 * retries), and every answer waits `delayMs()`. Both default to a good day.
 */
export type Weather = { fail?: () => boolean; delayMs?: () => number };

function withWeather(respond: (req: Recorded) => Reply, log: string[], w: Weather = {}) {
  return (req: Recorded): Reply => {
    const delayMs = w.delayMs?.() ?? 0;
    if (w.fail?.()) {
      log.push(`500 ${req.method} ${req.path.split("?")[0]}`);
      return { status: 500, body: "internal error", delayMs };
    }
    return { ...respond(req), delayMs };
  };
}

type Entity = { ref: string; skuRef: string; locationRef: string; qty: number };

/**
 * Fluent Commerce's Job/Batch API: POST /api/v4.1/job opens a job, POST …/job/{id}/batch takes
 * ≤ 5,000 entities, GET …/job/{id}/batch/{batchId} answers PENDING, RUNNING, then COMPLETE (or
 * `final(n)` for the n-th batch: FAILED, or NEVER to stay RUNNING). `reject(sku)` gives a reason.
 */
export function fluentFake(
  opts: {
    final?: (batch: number) => "COMPLETE" | "FAILED" | "NEVER";
    reject?: (sku: string) => string | null;
    weather?: Weather;
  } = {},
): JobFake {
  const applied = new Map<string, number>();
  const log: string[] = [];
  const batches = new Map<string, { entities: Entity[]; polls: number; n: number }>();
  let jobs = 0;
  const respond = (req: Recorded): Reply => {
    const path = req.path.split("?")[0]!;
    if (req.method === "POST" && path === "/api/v4.1/job") {
      const id = `J${++jobs}`;
      log.push(`open ${id}`);
      return json(200, { id });
    }
    const batch = /^\/api\/v4\.1\/job\/([^/]+)\/batch$/.exec(path);
    if (req.method === "POST" && batch) {
      const b = JSON.parse(req.body.toString("utf8")) as { action: string; entities: Entity[] };
      if (b.action !== "UPSERT" || !Array.isArray(b.entities) || b.entities.length > 5000)
        return json(400, { message: "bad batch" });
      const id = `B${batches.size + 1}`;
      batches.set(id, { entities: b.entities, polls: 0, n: batches.size + 1 });
      log.push(`batch ${batch[1]}/${id} ${req.headers["webhook-id"]}`);
      return json(200, { id });
    }
    const status = /^\/api\/v4\.1\/job\/([^/]+)\/batch\/([^/]+)$/.exec(path);
    if (req.method === "GET" && status) {
      const b = batches.get(status[2]!);
      if (!b) return json(404, { message: "no such batch" });
      b.polls += 1;
      const final = opts.final?.(b.n) ?? "COMPLETE";
      const state = b.polls === 1 ? "PENDING" : b.polls === 2 || final === "NEVER" ? "RUNNING" : final;
      log.push(`poll ${status[2]} ${state}`);
      const results: unknown[] = [];
      if (state === "COMPLETE") {
        for (const e of b.entities) {
          const why = opts.reject?.(e.skuRef) ?? null;
          if (why)
            results.push({
              ref: e.ref,
              skuRef: e.skuRef,
              locationRef: e.locationRef,
              status: "FAILED",
              message: why,
            });
          else applied.set(`${e.skuRef}|${e.locationRef}`, e.qty);
        }
      }
      return json(200, { id: status[2], status: state, results });
    }
    return json(404, { message: `no route ${req.method} ${path}` });
  };
  return { respond: withWeather(respond, log, opts.weather), applied, log };
}

/**
 * commercetools' Import API: POST /{project}/inventories/import-containers/{key} with ≤ 20
 * resources answers one operation per resource (`processing`); GET
 * /{project}/import-operations?ids=a,b lists them, `imported` or `rejected` after one more poll.
 */
export function commercetoolsFake(
  opts: { reject?: (sku: string) => string | null; weather?: Weather } = {},
): JobFake {
  const applied = new Map<string, number>();
  const log: string[] = [];
  type Op = { id: string; key: string; sku: string; channel: string; qty: number; polls: number };
  const ops = new Map<string, Op>();
  const respond = (req: Recorded): Reply => {
    const url = new URL(req.path, "http://x");
    if (req.method === "POST" && /^\/[^/]+\/inventories\/import-containers\/[^/]+$/.test(url.pathname)) {
      const b = JSON.parse(req.body.toString("utf8")) as {
        resources: { key: string; sku: string; quantityOnStock: number; supplyChannel: { key: string } }[];
      };
      if (b.resources.length < 1 || b.resources.length > 20) return json(400, { message: "1..20 resources" });
      const status = b.resources.map((r) => {
        const op = {
          id: `op-${ops.size + 1}`,
          key: r.key,
          sku: r.sku,
          channel: r.supplyChannel.key,
          qty: r.quantityOnStock,
          polls: 0,
        };
        ops.set(op.id, op);
        return { operationId: op.id, state: "processing", resourceKey: r.key };
      });
      log.push(`import ${status.length}`);
      return json(201, { operationStatus: status });
    }
    if (req.method === "GET" && /^\/[^/]+\/import-operations$/.test(url.pathname)) {
      const ids = (url.searchParams.get("ids") ?? "").split(",");
      const results = ids.map((id) => {
        const op = ops.get(id);
        if (!op) return { id, state: "unknown" };
        op.polls += 1;
        if (op.polls < 2) return { id, resourceKey: op.key, state: "processing" };
        const why = opts.reject?.(op.sku) ?? null;
        if (why)
          return {
            id,
            resourceKey: op.key,
            state: "rejected",
            errors: [{ code: "InvalidInput", message: why }],
          };
        applied.set(`${op.sku}|${op.channel}`, op.qty);
        return { id, resourceKey: op.key, state: "imported" };
      });
      log.push(`poll ${results.map((r) => r.state).join(",")}`);
      return json(200, { results });
    }
    return json(404, { message: `no route ${req.method} ${url.pathname}` });
  };
  return { respond: withWeather(respond, log, opts.weather), applied, log };
}
