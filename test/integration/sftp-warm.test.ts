/**
 * An sftp:// subscription's connection is opened when the engine takes the subscription, beside
 * the backlog's first read, not once the first part is ready (issue 13: loading ssh2 and the
 * handshake took as long as reading the part). The early connection is only a head start: when
 * it fails, nothing is recorded, and the first message connects again and is delivered.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { createSender } from "../../src/outbox/send.js";
import { sftpTarget } from "../../src/outbox/request.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { type Sshd, startSshd } from "../helpers/sshd.js";

const { cleanup } = useCleanup();

let sshd: Sshd;
beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.close();
});

const yaml = (name: string, dir: string) =>
  testConfig(
    [
      "subscriptions:",
      `  - name: ${name}`,
      '    subjects: ["order.*"]',
      `    url: "${sshd.url(dir)}"`,
      "    retry_intervals: [100ms]",
      "    sftp:",
      `      host_key: "${sshd.hostKey}"`,
      `      private_key: ${JSON.stringify(sshd.clientKey)}`,
      "",
    ].join("\n"),
  );

const visible = async (dir: string) => (await readdir(dir)).filter((n) => !n.startsWith("."));

// The first message and the early connection both load the SFTP sender lazily; asked in the same
// tick, a second sender made by that race would hold a connection close() never ends.
it("warm and send in the same tick: one connection, and close ends it", async () => {
  const dir = await sshd.folder("warm-race");
  const sender = createSender({ smtp: { url: "", from: "" } });
  const sub = buildSubscriptions(yaml("race", dir)).find((s) => s.name === "race")!;
  const target = sftpTarget(sub)!;
  try {
    const warming = sender.warm!({ url: sub.url, sftp: target, timeoutMs: 15_000 });
    const sent = await sender.send({
      url: sub.url,
      method: "POST",
      headers: {},
      body: Buffer.from('{"n":0}'),
      timeoutMs: 15_000,
      fileName: "race.json",
      sftp: target,
    });
    await warming;
    expect(sent.result).toEqual({ kind: "response", status: 200 });
    await waitUntil(async () => sshd.connections().length > 0, 15_000, "a connection");
    await new Promise((r) => setTimeout(r, 500)); // a second connection would be up by now
    expect(sshd.connections()).toHaveLength(1);
  } finally {
    await sender.close();
  }
  await waitUntil(async () => sshd.connections().length === 0, 15_000, "no connection after close");
});

describeEachDb("sftp:// connection opened ahead", (t) => {
  it("connects when the engine takes the subscription, and the first message uses that connection", async () => {
    const dir = await sshd.folder(`warm-${t().backend}`);
    const e = await startEngine(t().db, yaml("early", dir));
    cleanup.push(() => e.stop());
    // nothing is queued, yet the server has a connection for it
    const connections = await waitUntil(
      async () => sshd.connections().length === 1 && sshd.connections(),
      15_000,
      "a connection",
    );
    await e.enqueue({ subject: "order.created", payload: '{"n":1}' });
    await waitUntil(async () => (await visible(dir)).length === 1, 15_000, "the file");
    const [name] = await visible(dir);
    expect(await readFile(join(dir, name!), "utf8")).toBe('{"n":1}');
    expect(sshd.connections()).toEqual(connections); // the same connection, not a second one
  });

  it("a server down at start records nothing; the first message is delivered once it is up", async () => {
    const dir = await sshd.folder(`warm-down-${t().backend}`);
    await sshd.stop();
    try {
      const e = await startEngine(t().db, yaml("refused", dir));
      cleanup.push(() => e.stop());
      await new Promise((r) => setTimeout(r, 300)); // the early connection is refused meanwhile
      const attempts = await t().db.query(
        "select 1 from stock_sync.attempts a join stock_sync.deliveries d on d.id = a.delivery_id where d.subscription = 'refused'",
      );
      expect(attempts.rows).toEqual([]);
      await sshd.start();
      await e.enqueue({ subject: "order.created", payload: '{"n":2}' });
      await waitUntil(async () => (await visible(dir)).length === 1, 15_000, "the file");
    } finally {
      await sshd.start().catch(() => undefined);
    }
  });
});
