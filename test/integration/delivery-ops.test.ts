import { readdir, readFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SMTPServer } from "smtp-server";
import { expect, it } from "vitest";
import { listDeliveries, replay } from "../../src/outbox/admin.js";
import { purgeDelivered } from "../../src/outbox/retention.js";
import { useCleanup } from "../helpers/cleanup.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, type TestEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { startReceiver } from "../helpers/receiver.js";

const { cleanup } = useCleanup();

describeEachDb("delivery operations", (t) => {
  async function engine(yaml: string): Promise<TestEngine> {
    const e = await startEngine(t().db, testConfig(yaml));
    cleanup.push(() => e.stop());
    return e;
  }

  it("replays a dead message with the same webhook-id", async () => {
    let fail = true;
    const r = await startReceiver(() => ({ status: fail ? 500 : 200 }));
    cleanup.push(() => r.close());
    const e = await engine(
      `subscriptions:\n  - name: rp\n    subjects: ["order.*"]\n    url: "${r.url}"\n    retry_intervals: [0.02]\n    retries_until_failure: 5\n`,
    );
    const id = await e.enqueue({ subject: "order.created", payload: "{}" });
    await waitUntil(async () => (await listDeliveries(t().db, { status: "dead" })).length === 1);
    // The dead message deactivated the subscription; resume it, then replay the message.
    await t().db.query("update stock_sync.subscriptions set status = 'enabled' where name = 'rp'");
    fail = false;
    const replayed = await replay(t().db, { ids: [id] }, new Date());
    expect(replayed).toHaveLength(1);
    await waitUntil(async () => (await listDeliveries(t().db, { status: "delivered" })).length === 1);
    expect(r.requests.map((q) => q.headers["webhook-id"])).toEqual([id, id, id]);
    expect(await replay(t().db, { ids: [id] }, new Date())).toHaveLength(0); // delivered: nothing to replay
  });

  it("writes file:// deliveries atomically, named in delivery order", async () => {
    const dir = await mkdtemp(join(tmpdir(), "stock-sync-drop-"));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const e = await engine(
      `subscriptions:\n  - name: drop\n    subjects: ["order.*"]\n    url: "file://${dir}"\n    ordering: fifo\n`,
    );
    for (let n = 0; n < 5; n++) await e.enqueue({ subject: "order.created", payload: JSON.stringify({ n }) });
    const files = await waitUntil(async () => {
      // A file being written is a hidden temp file until its rename: readers skip dotfiles.
      const list = (await readdir(dir)).filter((f) => !f.startsWith(".")).sort();
      return list.length === 5 ? list : undefined;
    });
    expect(files.every((f) => /^\d{12}-order\.created-msg_\w+\.json$/.test(f))).toBe(true);
    const bodies = await Promise.all(files.map((f) => readFile(join(dir, f), "utf8")));
    expect(bodies.map((b) => JSON.parse(b).n)).toEqual([0, 1, 2, 3, 4]);
  });

  it("mails a deactivation notice through a real SMTP server", async () => {
    const mails: { to: string; data: string }[] = [];
    const smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS"],
      onData(stream, session, done) {
        let data = "";
        stream.on("data", (c) => (data += c));
        stream.on("end", () => {
          mails.push({ to: session.envelope.rcptTo.map((r) => r.address).join(","), data });
          done();
        });
      },
    });
    await new Promise<void>((r) => smtp.listen(0, "127.0.0.1", r));
    cleanup.push(() => new Promise<void>((r) => smtp.close(() => r())));
    const port = (smtp.server.address() as { port: number }).port;
    const r = await startReceiver(() => ({ status: 410 }));
    cleanup.push(() => r.close());
    await engine(
      `subscriptions:\n  - name: gone\n    subjects: ["order.*"]\n    url: "${r.url}"\n` +
        `notifications:\n  on_deactivation: ["mailto:ops@example.com"]\n  smtp: { url: "smtp://127.0.0.1:${port}" }\n`,
    ).then((e) => e.enqueue({ subject: "order.created", payload: "{}" }));
    await waitUntil(async () => mails.length === 1);
    expect(mails[0]!.to).toBe("ops@example.com");
    expect(mails[0]!.data).toMatch(/Subject: .*gone/);
  });

  it("purges delivered messages past the retention, never undelivered ones", async () => {
    const r = await startReceiver((req) => ({ status: req.body.toString().includes("keep") ? 500 : 204 }));
    cleanup.push(() => r.close());
    const e = await engine(
      `subscriptions:\n  - name: ret\n    subjects: ["order.*"]\n    url: "${r.url}"\n    retry_intervals: [3600]\n`,
    );
    await e.enqueue({ subject: "order.created", payload: '{"x":"done"}' });
    await e.enqueue({ subject: "order.created", payload: '{"x":"keep"}' });
    await r.waitFor(2);
    await waitUntil(
      async () => (await listDeliveries(t().db, { status: "failed", subscription: "ret" })).length === 1,
    );
    const owed = async () =>
      (await listDeliveries(t().db, { limit: 1000 }))
        .filter((d) => d.status !== "delivered")
        .map((d) => d.id);
    const before = await owed();
    const later = new Date(Date.now() + 31 * 86_400_000);
    expect(await purgeDelivered(t().db, new Date(), 30 * 86_400_000)).toBe(0); // nothing old enough yet
    expect(await purgeDelivered(t().db, later, 30 * 86_400_000)).toBeGreaterThanOrEqual(1);
    expect(await listDeliveries(t().db, { status: "delivered" })).toEqual([]);
    expect(await owed()).toEqual(before);
    const left = await listDeliveries(t().db, { subscription: "ret" });
    expect(left.map((d) => d.status)).toEqual(["failed"]);
  });
});
