// Issue 17.15: how OneStock signs is set in the config (server.inbound.onestock), checked
// through real HTTP against the connector's server.
import { createHmac } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectorError } from "../../src/errors.js";
import { createTestDb } from "../helpers/db.js";
import { testConfig } from "../helpers/engine.js";
import { startServer, type TestServer } from "../helpers/http.js";

const KEY = "onestock-hash-key-0123456789";
const body = JSON.stringify({ id: "evt-1", type: "created", data: { order_id: "O-1" } });
const sig = (content: string, encoding: "hex" | "base64") =>
  createHmac("sha256", KEY).update(content).digest(encoding);
const inbound = (signing: string) =>
  `server:\n  inbound:\n    scheme: onestock\n    secrets: ["${KEY}"]\n${signing}` +
  `subscriptions:\n  - name: erp\n    subjects: ["order.*"]\n    url: "http://127.0.0.1:9/x"\n    status: paused\n`;

describe("server.inbound.onestock", () => {
  let tdb: Awaited<ReturnType<typeof createTestDb>>;
  const servers: TestServer[] = [];
  beforeAll(async () => {
    tdb = await createTestDb("pglite");
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    await tdb?.drop();
  });
  const serve = async (signing: string) => {
    const s = await startServer(tdb.db, testConfig(inbound(signing)));
    servers.push(s);
    return s;
  };

  it("signed: body, encoding: base64 accepts a signature over the body alone, in base64", async () => {
    const s = await serve("    onestock: { signed: body, encoding: base64 }\n");
    const t = Math.floor(Date.now() / 1000);
    const ok = await s.post(body, {
      "content-type": "application/json",
      "onestock-signature": `t=${t},h0=${sig(body, "base64")}`,
    });
    expect(ok.status).toBe(202);
    // The default reading (<t>.<body>, hex) does not match here.
    const other = await s.post(body.replace("evt-1", "evt-2"), {
      "content-type": "application/json",
      "onestock-signature": `t=${t},h0=${sig(`${t}.${body}`, "hex")}`,
    });
    expect(other.status).toBe(401);
  });

  it("the default is HMAC-SHA256 over <t>.<body>, hex", async () => {
    const s = await serve("");
    const t = Math.floor(Date.now() / 1000);
    const b = body.replace("evt-1", "evt-3");
    const ok = await s.post(b, {
      "content-type": "application/json",
      "onestock-signature": `t=${t},h0=${sig(`${t}.${b}`, "hex")}`,
    });
    expect(ok.status).toBe(202);
  });

  it('signed: "t" (the timestamp alone) is refused at load: it would vouch for any body', () => {
    expect(() => testConfig(inbound('    onestock: { signed: "t" }\n'))).toThrow(ConnectorError);
    expect(() => testConfig(inbound('    onestock: { signed: "t" }\n'))).toThrow(
      /server\.inbound\.onestock\.signed/,
    );
    expect(() => testConfig(inbound("    onestock: { encoding: base32 }\n"))).toThrow(
      /server\.inbound\.onestock\.encoding/,
    );
  });
});
