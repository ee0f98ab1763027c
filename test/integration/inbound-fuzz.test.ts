import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeEachDb } from "../helpers/db.js";
import { testConfig } from "../helpers/engine.js";
import { type FuzzCase, fuzzCases } from "../helpers/fuzz.js";
import { countRows, startServer, type TestServer } from "../helpers/http.js";

const SECRET = `whsec_${randomBytes(24).toString("base64")}`;
const MAX_BODY = 4096;
const PATH = "/webhooks/oms";
const CASES = 1200;
const SEED = 20240611;
const PARALLEL = 24;

type Answer = { status: number; code: unknown };

/** One raw HTTP/1.1 exchange: the bytes out, the status line and JSON body back. */
function sendRaw(url: string, bytes: Buffer): Promise<Answer> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(port), hostname, () => socket.end(bytes));
    socket.on("data", (c) => chunks.push(c));
    // the server may close while we still write (431); what it answered before that counts
    socket.on("error", () => undefined);
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("latin1");
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
      if (!status) return reject(new Error(`no HTTP answer: ${JSON.stringify(text.slice(0, 200))}`));
      const body = text.slice(text.indexOf("\r\n\r\n") + 4);
      let code: unknown;
      try {
        code = (JSON.parse(body) as { code?: unknown }).code;
      } catch {
        code = undefined;
      }
      resolve({ status, code });
    });
  });
}

async function send(s: TestServer, c: FuzzCase): Promise<Answer> {
  if (c.raw) return sendRaw(s.url, c.raw);
  const res = await fetch(s.url + PATH, { method: "POST", body: c.body, headers: c.headers });
  const text = await res.text();
  let code: unknown;
  try {
    code = (JSON.parse(text) as { code?: unknown }).code;
  } catch {
    code = undefined;
  }
  return { status: res.status, code };
}

describeEachDb("inbound fuzz", (t) => {
  let s: TestServer;
  beforeAll(async () => {
    s = await startServer(
      t().db,
      testConfig(
        `server:\n  inbound:\n    path: ${PATH}\n    secrets: ["${SECRET}"]\n    max_body: ${MAX_BODY}\n` +
          `subscriptions:\n  - name: all\n    subjects: ["*"]\n    url: "http://127.0.0.1:9/x"\n    status: paused\n`,
      ),
    );
  });
  afterAll(() => s?.close());

  it(`answers ${CASES} malformed requests with a 4xx and a code, stores none, and stays up`, async () => {
    const cases = fuzzCases(SECRET, MAX_BODY, PATH, SEED, CASES);
    const wrong: string[] = [];
    const byKind = new Map<string, number>();
    const seen = new Map<string, number>();
    for (let i = 0; i < cases.length; i += PARALLEL) {
      const batch = cases.slice(i, i + PARALLEL);
      const answers = await Promise.all(batch.map((c) => send(s, c)));
      answers.forEach((a, j) => {
        const c = batch[j]!;
        byKind.set(c.kind, (byKind.get(c.kind) ?? 0) + 1);
        const key = `${c.kind} ${a.status} ${String(a.code)}`;
        seen.set(key, (seen.get(key) ?? 0) + 1);
        if (!c.expect.includes(a.status) || typeof a.code !== "string") {
          const what = c.raw
            ? c.raw.toString("latin1").slice(0, 300)
            : c.body?.toString("latin1").slice(0, 120);
          wrong.push(
            `#${i + j} ${c.kind}: got ${a.status} ${String(a.code)}, expected ${c.expect}: ${JSON.stringify(what)}`,
          );
        }
      });
    }
    expect(wrong.slice(0, 10)).toEqual([]);
    expect(byKind.size).toBeGreaterThanOrEqual(12);
    if (process.env.FUZZ_REPORT)
      console.log(
        [...seen]
          .sort()
          .map(([k, n]) => `${n}\t${k}`)
          .join("\n"),
      );
    // the generators reach every check: size, media type, signature and body
    const statuses = new Set([...seen.keys()].map((k) => Number(/ (\d{3}) /.exec(k)?.[1])));
    for (const status of [400, 401, 413, 415, 431]) expect(statuses).toContain(status);
    expect(await countRows(t().db, "inbox")).toBe(0);
    expect(await countRows(t().db, "messages")).toBe(0);
    const health = await fetch(`${s.url}/healthz`);
    expect(health.status).toBe(200);
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    // every fuzz answer was counted, and none was a 2xx or 5xx
    expect(metrics).not.toMatch(/stock_sync_inbound_requests_total\{status="[25]\d\d"\}/);
  });
});
