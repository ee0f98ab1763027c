/**
 * An sftp:// destination's connection on a real sshd (issue 13): one connection reused across
 * messages, a new one after the server dropped it, `timeout` over connect + upload; the rename
 * fallback of a server without posix-rename.
 */
import { once } from "node:events";
import { readdir, readFile } from "node:fs/promises";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { SftpDestination } from "../../src/sftp/destination.js";
import { SftpBlock } from "../../src/sftp/options.js";
import { waitUntil } from "../helpers/engine.js";
import { watchDrop } from "../helpers/sftp-drop.js";
import { type Sshd, startSshd, TEST_PASSWORD } from "../helpers/sshd.js";

let sshd: Sshd;
beforeAll(async () => {
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.close();
});

const body = Buffer.from("sku,location,quantity\nA,L,1\n");

it("reuses one connection for many messages, and opens a new one after the server dropped it", async () => {
  const dir = await sshd.folder("reuse");
  const opts = SftpBlock.parse({ private_key: sshd.clientKey, host_key: sshd.hostKey });
  const dest = new SftpDestination(sshd.url(dir), opts, 2);
  const send = (name: string) => dest.send({ url: sshd.url(dir), fileName: name, body, timeoutMs: 10_000 });
  try {
    expect(await send("a.csv")).toEqual({ kind: "response", status: 200 });
    const first = sshd.sessions();
    expect(first.length).toBeGreaterThan(0);
    for (const n of ["b.csv", "c.csv", "d.csv"])
      expect(await send(n)).toEqual({ kind: "response", status: 200 });
    expect(sshd.sessions()).toEqual(first); // the same connection's processes, no new ones
    sshd.dropConnections();
    await waitUntil(
      async () => sshd.sessions().every((p) => !first.includes(p)),
      10_000,
      "the old session gone",
    );
    // the dead connection is noticed and replaced within the attempt: no failed attempt for it
    expect(await send("e.csv")).toEqual({ kind: "response", status: 200 });
    expect((await readdir(dir)).sort()).toEqual(["a.csv", "b.csv", "c.csv", "d.csv", "e.csv"]);
  } finally {
    dest.close();
  }
});

it("concurrency bounds the uploads in flight on the connection", async () => {
  const dir = await sshd.folder("concurrency");
  const opts = SftpBlock.parse({ private_key: sshd.clientKey, host_key: sshd.hostKey });
  const dest = new SftpDestination(sshd.url(dir), opts, 2);
  const big = Buffer.alloc(4 * 1024 * 1024, "SKU,L,1\n");
  let most = 0;
  let polling = true;
  // the temp files in the folder at one moment are the uploads in flight
  const poll = (async () => {
    while (polling) {
      const temps = (await readdir(dir)).filter((n) => n.endsWith(".tmp")).length;
      most = Math.max(most, temps);
      await new Promise((r) => setTimeout(r, 2));
    }
  })();
  try {
    const names = ["a", "b", "c", "d", "e", "f"].map((n) => `${n}.csv`);
    const results = await Promise.all(
      names.map((fileName) => dest.send({ url: sshd.url(dir), fileName, body: big, timeoutMs: 60_000 })),
    );
    expect(results.every((r) => r.kind === "response")).toBe(true);
    expect((await readdir(dir)).sort()).toEqual(names);
  } finally {
    polling = false;
    await poll;
    dest.close();
  }
  expect(most).toBeGreaterThan(0);
  expect(most).toBeLessThanOrEqual(2);
});

it("timeout bounds the connection: a server that never speaks SSH is a timeout, within it", async () => {
  // a real TCP listener that accepts and stays silent (a hung server or a black-holing firewall)
  const sockets = new Set<Socket>();
  const silent = createServer((s) => sockets.add(s)).listen(0, "127.0.0.1");
  await once(silent, "listening");
  const { port } = silent.address() as { port: number };
  const url = `sftp://stock@127.0.0.1:${port}/in`;
  const dest = new SftpDestination(url, SftpBlock.parse({ password: "x", host_key: sshd.hostKey }), 1);
  try {
    const result = await dest.send({ url, fileName: "a.csv", body, timeoutMs: 500 });
    expect(result).toMatchObject({ kind: "error", errorClass: "timeout" });
  } finally {
    dest.close();
    for (const s of sockets) s.destroy();
    silent.close();
  }
});

it("without posix-rename (denied by the server), a re-delivery still replaces the file, never seen partial", async () => {
  // Denied, OpenSSH leaves the extension out of its version reply, as a server without it does
  // (`sftp-server -Q requests` names it "posix-rename"; "posix-rename@openssh.com" is not denied)
  const plain = await startSshd({ sftpFlags: ["-P", "posix-rename"] });
  try {
    const dir = await plain.folder("plain-rename");
    const opts = SftpBlock.parse({ private_key: plain.clientKey, host_key: plain.hostKey });
    const dest = new SftpDestination(plain.url(dir), opts, 1);
    const first = Buffer.alloc(6 * 1024 * 1024, "SKU-1,L,1\n");
    const second = Buffer.alloc(7 * 1024 * 1024, "SKU-2,L,2\n");
    const watch = watchDrop(dir, () => [first.length, second.length]);
    const send = (name: string, body: Buffer) =>
      dest.send({ url: plain.url(dir), fileName: name, body, timeoutMs: 60_000 });
    try {
      expect(await send("000001-full.csv", first)).toEqual({ kind: "response", status: 200 });
      await waitUntil(async () => watch.seen.includes("000001-full.csv"), 10_000, "the first copy seen");
      // the same message again (a re-delivery after a crash): the same name, replaced whole
      expect(await send("000001-full.csv", second)).toEqual({ kind: "response", status: 200 });
      expect(await send("000002-full.csv", first)).toEqual({ kind: "response", status: 200 });
      await waitUntil(async () => watch.seen.includes("000002-full.csv"), 10_000, "the next file seen");
    } finally {
      await watch.stop();
      dest.close();
    }
    expect(watch.partial).toEqual([]);
    expect((await readdir(dir)).sort()).toEqual(["000001-full.csv", "000002-full.csv"]); // no temp left
    expect((await readFile(join(dir, "000001-full.csv"))).equals(second)).toBe(true);
    expect((await readFile(join(dir, "000002-full.csv"))).equals(first)).toBe(true);
  } finally {
    await plain.close();
  }
});

it("logs in with one request per configured method, the key first: no `none` probe the server answers late", async () => {
  // At DEBUG1 the server logs each authentication request; a failed one is answered after a delay
  // (OpenSSH's defence against user enumeration): ~8 ms of every connection's handshake.
  const verbose = await startSshd({ logLevel: "DEBUG1" });
  const methods = () =>
    [...verbose.log().matchAll(/userauth-request for user \S+ service \S+ method (\S+)/g)].map((m) => m[1]);
  try {
    const dir = await verbose.folder("auth");
    const login = async (opts: Record<string, string>) => {
      const dest = new SftpDestination(
        verbose.url(dir),
        SftpBlock.parse({ host_key: verbose.hostKey, ...opts }),
        1,
      );
      try {
        return await dest.send({ url: verbose.url(dir), fileName: "a.csv", body, timeoutMs: 10_000 });
      } finally {
        dest.close();
      }
    };
    expect(await login({ private_key: verbose.clientKey })).toEqual({ kind: "response", status: 200 });
    // ssh2 asks whether the key would do, then signs: two publickey requests, nothing else
    expect(methods()).toEqual(["publickey", "publickey"]);
    if (verbose.passwordLogin) {
      const before = methods().length;
      // a key the server does not know, then the password: tried in that order, and in no other
      expect(await login({ private_key: verbose.strangerKey, password: TEST_PASSWORD })).toEqual({
        kind: "response",
        status: 200,
      });
      expect(methods().slice(before)).toEqual(["publickey", "password"]);
    }
  } finally {
    await verbose.close();
  }
});
