/**
 * sftp:// subscriptions against a real OpenSSH sshd (issue 13): stock files arrive in order and
 * byte for byte, an importer polling the folder never sees a partial file, password and
 * passphrase logins work.
 */
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { SftpDestination } from "../../src/sftp/destination.js";
import { SftpBlock } from "../../src/sftp/options.js";
import { describeEachDb } from "../helpers/db.js";
import { startEngine, testConfig, waitUntil } from "../helpers/engine.js";
import { dropContents, expectedFiles, watchDrop } from "../helpers/sftp-drop.js";
import { KEY_PASSPHRASE, type Sshd, startSshd, TEST_PASSWORD } from "../helpers/sshd.js";
import { stockFixture } from "../helpers/stock.js";

let sshd: Sshd;
beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.close();
});

/** One stock subscription to `dir` on the test sshd; `sftp` is the block's extra YAML lines. */
function sftpYaml(name: string, dir: string, sftp: string[], extra: string[] = []): string {
  return [
    "stock:",
    "  format: { part_rows: 400 }",
    "subscriptions:",
    `  - name: ${name}`,
    "    subjects: [stock.full, stock.delta]",
    `    url: "${sshd.url(dir)}"`,
    "    retry_intervals: [100ms, 100ms, 100ms, 100ms, 100ms]",
    ...extra.map((l) => `    ${l}`),
    "    sftp:",
    `      host_key: "${sshd.hostKey}"`,
    ...sftp.map((l) => `      ${l}`),
    "",
  ].join("\n");
}

const keyLine = (key: string) => `private_key: ${JSON.stringify(key)}`;

// The upload itself, without the outbox: storing a 50 MB message in PGlite alone takes minutes.
it("a poller never sees a 50 MB part before it is whole; a re-upload to the same name replaces it whole", async () => {
  const dir = await sshd.folder("big");
  const opts = SftpBlock.parse({ private_key: sshd.clientKey, host_key: sshd.hostKey });
  const dest = new SftpDestination(sshd.url(dir), opts, 1);
  const name = "000001-full-part-0001-of-0001.csv";
  const first = Buffer.alloc(50 * 1024 * 1024, "SKU-BIG,LOC,1\n");
  const second = Buffer.alloc(first.length + 3, "SKU-BIG,LOC,2\n");
  // a poller sees nothing, the first file whole, or (after the re-upload) the second whole
  const watch = watchDrop(dir, () => [first.length, second.length]);
  try {
    const msg = { url: sshd.url(dir), fileName: name, timeoutMs: 60_000 };
    expect(await dest.send({ ...msg, body: first })).toEqual({ kind: "response", status: 200 });
    expect((await readFile(join(dir, name))).equals(first)).toBe(true);
    expect(await dest.send({ ...msg, body: second })).toEqual({ kind: "response", status: 200 });
  } finally {
    await watch.stop();
    dest.close();
  }
  expect(watch.seen).toEqual([name]);
  expect(watch.partial).toEqual([]);
  expect((await readFile(join(dir, name))).equals(second)).toBe(true);
  expect(await readdir(dir)).toEqual([name]); // no temp file left
});

describeEachDb("sftp:// delivery", (t) => {
  it("a full of several parts and deltas reach the folder in order, byte for byte, never partly visible (incl. a 5 MB part)", async () => {
    const { db } = t();
    const dir = await sshd.folder(`order-${t().backend}`);
    const fx = await stockFixture(db, sftpYaml("oms", dir, [keyLine(sshd.clientKey)]));
    await fx.exporter.run("full", { trigger: "test" });
    for (let i = 0; i < 3; i++) {
      await db.query(
        "update inventory.stock_on_hand set quantity = quantity + 7 where ctid in (select ctid from inventory.stock_on_hand order by sku, location offset $1 limit 3)",
        [i * 5],
      );
      expect((await fx.exporter.run("delta", { trigger: "test" })).status).toBe("enqueued");
    }
    // A large part as the last message, so an upload is seen half-way (50 MB: the test below).
    const big = Buffer.alloc(5 * 1024 * 1024, "SKU-BIG,LOC,1\n");
    const engine = await startEngine(db, fx.config, { start: false });
    await engine.enqueue({
      subject: "stock.delta",
      payload: big,
      contentType: "text/csv",
      headers: { "stock-sync-kind": "delta", "stock-sync-part": "1/1" },
      sequenced: true,
    });
    const files = await expectedFiles(db, "oms");
    expect(files.filter((f) => f.name.includes("-full-")).length).toBeGreaterThan(2);
    expect(files.filter((f) => f.name.includes("-delta-")).length).toBe(4);
    const sizes = new Map(files.map((f) => [f.name, f.body.length]));
    const watch = watchDrop(dir, (n) => sizes.get(n));
    try {
      await engine.engine.start();
      await waitUntil(async () => watch.seen.length === files.length, 60_000, "every file in the folder");
    } finally {
      await watch.stop();
      await engine.stop();
    }
    expect(watch.partial).toEqual([]);
    expect(watch.seen).toEqual(files.map((f) => f.name));
    expect(watch.outOfOrder(files.map((f) => f.name))).toEqual([]);
    const got = await dropContents(dir);
    expect([...got.keys()].sort()).toEqual(files.map((f) => f.name));
    for (const f of files) expect(got.get(f.name)!.equals(f.body), f.name).toBe(true);
    const { rows } = await db.query<{ n: number }>(
      "select count(*)::int as n from stock_sync.deliveries where subscription = 'oms' and status <> 'delivered'",
    );
    expect(rows[0]!.n).toBe(0);
  });

  for (const variant of ["password", "passphrase-protected key"] as const) {
    it(`logs in with a ${variant}, writes the marker after the file, creates the folder`, async ({
      skip,
    }) => {
      if (variant === "password" && !sshd.passwordLogin)
        return skip("password login needs root here (a test user with a known password)");
      const { db } = t();
      const base = await sshd.folder(`login-${variant.split(" ")[0]}-${t().backend}`);
      const dir = `${base}/new/inner`;
      const auth =
        variant === "password"
          ? [`password: "${TEST_PASSWORD}"`]
          : [keyLine(sshd.passphraseKey), `passphrase: "${KEY_PASSPHRASE}"`];
      const name = `login-${variant.split(" ")[0]}`;
      const config = testConfig(sftpYaml(name, dir, [...auth, 'marker: ".done"', "mkdir: true"]));
      const engine = await startEngine(db, config);
      try {
        await engine.enqueue({
          subject: "stock.full",
          payload: "sku,location,quantity\nA,L,1\n",
          contentType: "text/csv",
          headers: { "stock-sync-kind": "full", "stock-sync-part": "1/1" },
          sequenced: true,
        });
        const [file] = await expectedFiles(db, name);
        await waitUntil(
          async () => (await dropContents(dir).catch(() => new Map())).size === 2,
          20_000,
          "file and marker",
        );
        const got = await dropContents(dir);
        expect([...got.keys()].sort()).toEqual([file!.name, `${file!.name}.done`]);
        expect(got.get(file!.name)!.equals(file!.body)).toBe(true);
        expect(got.get(`${file!.name}.done`)!.length).toBe(0);
      } finally {
        await engine.stop();
      }
    });
  }
});
