/**
 * Issue 18 §1 and §3: the embedded database is this OS user's alone. The other user is a real one,
 * created here (the tests run as root locally and in CI) and removed afterwards.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { chmod, mkdir, mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type EmbeddedDb, openEmbedded } from "../../src/db/embedded.js";

const asRoot = process.getuid?.() === 0;
let parent: string;
let dataDir: string;
let owner: EmbeddedDb;
let user: { name: string; uid: number; gid: number } | undefined;

beforeAll(async () => {
  parent = await mkdtemp(join(tmpdir(), "stock-sync-private-"));
  // An ordinary parent folder other users may pass through, as /srv or /opt would be.
  await chmod(parent, 0o755);
  dataDir = join(parent, "data");
  owner = await openEmbedded(dataDir, { session: { idleMs: 1000, maxMs: 60_000 } });
  if (asRoot) {
    const name = `sstest${randomBytes(3).toString("hex")}`;
    execFileSync("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]);
    const id = (flag: string) => Number(execFileSync("id", [flag, name], { encoding: "utf8" }).trim());
    user = { name, uid: id("-u"), gid: id("-g") };
  }
}, 120_000);

afterAll(async () => {
  await owner?.close();
  if (user) execFileSync("userdel", [user.name]);
  await rm(parent, { recursive: true, force: true });
});

/**
 * Run as the other user: read endpoint.json if it can, then try every way in (the TCP port an
 * endpoint names, the socket in data_dir) with a startup packet for user postgres, no password.
 * Prints what it reached: "auth-ok" means a session was granted.
 */
const INTRUDER = `
const fs = require("node:fs"), net = require("node:net"), path = require("node:path");
const dir = process.argv[1];
let endpoint = null;
try { endpoint = JSON.parse(fs.readFileSync(path.join(dir, "endpoint.json"), "utf8")); } catch (e) { endpoint = e.code; }
const targets = [{ path: path.join(dir, ".s.PGSQL.5432") }];
if (endpoint && endpoint.port) targets.push({ host: "127.0.0.1", port: endpoint.port });
if (endpoint && endpoint.socketDir) targets.push({ path: path.join(endpoint.socketDir, ".s.PGSQL.5432") });
const params = Buffer.from("user\\0postgres\\0database\\0postgres\\0\\0");
const startup = Buffer.alloc(8); startup.writeInt32BE(8 + params.length, 0); startup.writeInt32BE(196608, 4);
const tryOne = (t) => new Promise((resolve) => {
  const s = net.connect(t);
  s.on("error", (e) => resolve(e.code));
  s.on("connect", () => s.write(Buffer.concat([startup, params])));
  s.on("data", (d) => { s.destroy(); resolve(d[0] === 0x52 && d.readInt32BE(5) === 0 ? "auth-ok" : "refused"); });
  setTimeout(() => { s.destroy(); resolve("timeout"); }, 3000);
});
(async () => {
  const results = [];
  for (const t of targets) results.push(await tryOne(t));
  console.log(JSON.stringify({ endpoint: typeof endpoint === "string" ? endpoint : "read", results }));
})();
`;

async function asOtherUser(dir: string): Promise<{ endpoint: string; results: string[] }> {
  const child = spawn(process.execPath, ["-e", INTRUDER, dir], {
    uid: user!.uid,
    gid: user!.gid,
    cwd: "/",
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d) => (out += d));
  child.stderr.on("data", (d) => (err += d));
  await once(child, "exit");
  if (!out) throw new Error(`intruder printed nothing: ${err}`);
  return JSON.parse(out);
}

describe("the embedded database is private to this OS user", () => {
  it("creates data_dir 0700 and endpoint.json 0600, and refuses a data_dir others can enter", async () => {
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    expect((await stat(join(dataDir, "endpoint.json"))).mode & 0o777).toBe(0o600);
    const open = join(parent, "open");
    await mkdir(open, { mode: 0o755 });
    await chmod(open, 0o755);
    await expect(openEmbedded(open)).rejects.toThrow(
      /accessible to other users \(mode 755\); run: chmod 700/,
    );
  });

  it.runIf(asRoot)("another local user cannot read the endpoint or open a session", async () => {
    const seen = await asOtherUser(dataDir);
    expect(seen.endpoint).toBe("EACCES");
    expect(seen.results).not.toContain("auth-ok");
    expect(seen.results.length).toBeGreaterThan(0);
  });

  it("drops a client that holds the session idle inside BEGIN; the owner's queries go on", async () => {
    const client = new pg.Client(owner.url);
    const errors: Error[] = [];
    client.on("error", (e) => errors.push(e));
    await client.connect();
    await client.query("begin");
    await client.query("create table held (v int)");
    const started = Date.now();
    const { rows } = await owner.query<{ n: number }>("select 1 as n");
    expect(rows).toEqual([{ n: 1 }]);
    // idle bound 1 s in this test; a generous ceiling, this is a liveness check
    expect(Date.now() - started).toBeLessThan(15_000);
    // its transaction was rolled back with it
    expect(
      (await owner.query("select count(*)::int as n from pg_tables where tablename = 'held'")).rows,
    ).toEqual([{ n: 0 }]);
    await client.end().catch(() => undefined);
  });

  it("refuses server-side file and program access from a client, and keeps serving", async () => {
    const client = new pg.Client(owner.url);
    client.on("error", () => undefined);
    await client.connect();
    try {
      for (const sql of [
        "copy (select 1) to program 'true'",
        "COPY (select 1) TO/**/PROGRAM 'true'",
        "copy (select 1) to '/tmp/stock-sync-escape'",
        "select pg_read_file('/etc/hostname')",
      ]) {
        await expect(client.query(sql), sql).rejects.toMatchObject({ code: "42501" });
      }
      // the extended protocol is checked the same way (with parameters, Bind then fails: the
      // refusal takes none)
      await expect(client.query("select pg_read_file($1)", ["/etc/hostname"])).rejects.toMatchObject({
        code: expect.stringMatching(/^(42501|08P01)$/),
      });
      expect((await client.query("select 2 as n")).rows).toEqual([{ n: 2 }]);
    } finally {
      await client.end();
    }
    expect((await owner.query("select 3 as n")).rows).toEqual([{ n: 3 }]);
  });
});
