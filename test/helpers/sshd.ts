/**
 * A real OpenSSH server for the sftp:// tests: Debian's /usr/sbin/sshd on 127.0.0.1 and a free
 * port, with a throwaway host key, a generated client key (and one with a passphrase) in a temp
 * authorized_keys, `internal-sftp`, its pid file and everything else in a temp folder that close()
 * removes. No system sshd or its config is touched.
 *
 * As root (CI), logins go to a user of the server's own, `stocksync-sftp-<pid>-<random>` (created with
 * a known password when it starts, removed by close(); one left by a test process that died is
 * removed by the next start), because root ignores file permissions and the read-only folder test
 * needs them to hold. A user per server lets test files run side by side (vitest workers): with
 * one shared user they shared its processes and logins.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { chmod, chown, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

export const SSHD = "/usr/sbin/sshd";
const USER_PREFIX = "stocksync-sftp-";
export const TEST_PASSWORD = "stock-sync-test-password";
export const KEY_PASSPHRASE = "stock-sync test passphrase";

export type Sshd = {
  host: string;
  port: number;
  user: string;
  /** Password login works (only as root, where the test user can be given a password). */
  passwordLogin: boolean;
  /** A folder the login user owns, for the tests' remote folders. */
  root: string;
  /** "SHA256:…" of the server's host key, as `ssh-keygen -lf` prints it. */
  hostKey: string;
  /** The server's host key as a known_hosts line names it ("ssh-ed25519 AAAA…"). */
  hostPublicKey: string;
  /** Another key of the same type, not the server's ("ssh-ed25519 AAAA…"). */
  otherPublicKey: string;
  clientKey: string;
  clientKeyFile: string;
  /** A client key encrypted with KEY_PASSPHRASE (also authorized). */
  passphraseKey: string;
  /** An authorized key the server does not know. */
  strangerKey: string;
  /** `sftp://user@127.0.0.1:port<dir>` */
  url(dir: string): string;
  /** A folder under `root` owned by the login user. */
  folder(name: string): Promise<string>;
  /**
   * A folder under `root` on a tmpfs of `bytes` (a disk that fills up), owned by the login user;
   * null where mounting is not allowed (not root). close() unmounts it.
   */
  smallDisk(name: string, bytes: number): Promise<string | null>;
  /** The server's per-connection processes (empty when no client is connected). */
  sessions(): number[];
  /** The listening server's pid (undefined while stopped). */
  pid(): number | undefined;
  /** One process per client connection (the server's direct children), whatever it runs below. */
  connections(): number[];
  /** What the server wrote to its log since it started (its LogLevel: SshdOptions.logLevel). */
  log(): string;
  /** Ends every client connection (SIGKILL to their processes); the server keeps listening. */
  dropConnections(): void;
  stop(): Promise<void>;
  start(): Promise<void>;
  close(): Promise<void>;
};

export type SshdOptions = {
  /** Flags for the server's SFTP subsystem (internal-sftp takes sftp-server's), e.g. `-P req,…`. */
  sftpFlags?: string[];
  /** The server's LogLevel (DEBUG1 shows each authentication request a client makes). @default ERROR */
  logLevel?: string;
};

export async function startSshd(options: SshdOptions = {}): Promise<Sshd> {
  const dir = await mkdtemp(join(tmpdir(), "stock-sync-sshd-"));
  await chmod(dir, 0o755);
  const asRoot = process.getuid?.() === 0;
  const user = asRoot ? await createTestUser() : userInfo().username;
  const owner = asRoot ? idsOf(user) : null;
  const keygen = (file: string, passphrase = "") =>
    execFileSync("ssh-keygen", [
      "-q",
      "-t",
      "ed25519",
      "-N",
      passphrase,
      "-C",
      "stock-sync-test",
      "-f",
      file,
    ]);
  keygen(join(dir, "host_key"));
  keygen(join(dir, "client_key"));
  keygen(join(dir, "pass_key"), KEY_PASSPHRASE);
  keygen(join(dir, "stranger_key"));
  const hostKey = execFileSync("ssh-keygen", ["-lf", join(dir, "host_key.pub")], { encoding: "utf8" }).split(
    " ",
  )[1]!;
  const pubs = await Promise.all(
    ["client_key", "pass_key"].map((k) => readFile(join(dir, `${k}.pub`), "utf8")),
  );
  await writeFile(join(dir, "authorized_keys"), pubs.join(""), { mode: 0o644 });
  const root = join(dir, "remote");
  await mkdir(root);
  if (owner) await chown(root, owner.uid, owner.gid);
  const port = await freePort();
  await writeFile(join(dir, "sshd_config"), sshdConfig(dir, port, user, asRoot, options));
  // sshd insists on its privilege separation folder when it runs as root
  if (asRoot) await mkdir("/run/sshd", { recursive: true, mode: 0o755 });

  let child: ChildProcess | null = null;
  let log = "";
  const mounts: string[] = [];
  const start = async () => {
    if (child && child.exitCode === null && child.signalCode === null) return;
    child = spawn(SSHD, ["-D", "-e", "-f", join(dir, "sshd_config")], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    child.stderr!.on("data", (d) => (log += d));
    await waitForBanner(port, child, () => log);
  };
  const stop = async () => {
    const c = child;
    child = null;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    // sshd serves each connection from a child of its own: those go too, as in a real outage
    const sessions = descendants(c.pid!);
    const exited = once(c, "exit");
    c.kill("SIGTERM");
    await exited;
    for (const pid of sessions) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  };
  await start();
  const read = (name: string) => readFile(join(dir, name), "utf8");
  return {
    host: "127.0.0.1",
    port,
    user,
    passwordLogin: asRoot,
    root,
    hostKey,
    hostPublicKey: publicKey(await read("host_key.pub")),
    otherPublicKey: publicKey(await read("stranger_key.pub")),
    clientKey: await read("client_key"),
    clientKeyFile: join(dir, "client_key"),
    passphraseKey: await read("pass_key"),
    strangerKey: await read("stranger_key"),
    url: (path) => `sftp://${user}@127.0.0.1:${port}${path}`,
    async folder(name) {
      const path = join(root, name);
      if (!owner) {
        await mkdir(path, { recursive: true });
        return path;
      }
      // Made under another name, handed to the login user, then renamed into place: a client
      // retrying meanwhile (the 'missing folder' test) must never find it there but root's.
      const ready = await stat(path).then(
        () => true,
        () => false,
      );
      if (!ready) {
        await mkdir(dirname(path), { recursive: true });
        const making = `${path}.making-${randomBytes(3).toString("hex")}`;
        await mkdir(making);
        await chown(making, owner.uid, owner.gid);
        await rename(making, path);
      }
      await chown(path, owner.uid, owner.gid);
      return path;
    },
    async smallDisk(name, bytes) {
      if (!asRoot) return null;
      const path = join(root, name);
      await mkdir(path, { recursive: true });
      execFileSync("mount", ["-t", "tmpfs", "-o", `size=${bytes},mode=0755`, "tmpfs", path]);
      mounts.push(path);
      if (owner) await chown(path, owner.uid, owner.gid);
      return path;
    },
    sessions: () => (child?.pid ? descendants(child.pid) : []),
    pid: () => child?.pid,
    connections: () => (child?.pid ? children(child.pid) : []),
    log: () => log,
    dropConnections() {
      for (const pid of child?.pid ? descendants(child.pid) : []) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
    },
    stop,
    start,
    async close() {
      await stop();
      for (const path of mounts.splice(0)) execFileSync("umount", [path]);
      await rm(dir, { recursive: true, force: true });
      if (asRoot) await removeTestUser(user);
    },
  };
}

function sshdConfig(dir: string, port: number, user: string, asRoot: boolean, options: SshdOptions): string {
  return `${[
    `Port ${port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${join(dir, "host_key")}`,
    `PidFile ${join(dir, "sshd.pid")}`,
    `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
    "StrictModes no",
    "UsePAM no",
    `PasswordAuthentication ${asRoot ? "yes" : "no"}`,
    "KbdInteractiveAuthentication no",
    "PubkeyAuthentication yes",
    "PermitRootLogin yes",
    `AllowUsers ${user}`,
    `Subsystem sftp ${["internal-sftp", ...(options.sftpFlags ?? [])].join(" ")}`,
    `LogLevel ${options.logLevel ?? "ERROR"}`,
  ].join("\n")}\n`;
}

/** A user for one server, with TEST_PASSWORD; first removes those of test processes now gone. */
async function createTestUser(): Promise<string> {
  const passwd = await readFile("/etc/passwd", "utf8");
  for (const line of passwd.split("\n")) {
    const name = line.split(":")[0]!;
    const pid = name.startsWith(USER_PREFIX) ? Number(name.slice(USER_PREFIX.length).split("-")[0]) : 0;
    if (pid > 0 && pid !== process.pid && !alive(pid)) await removeTestUser(name);
  }
  const name = `${USER_PREFIX}${process.pid}-${randomBytes(3).toString("hex")}`;
  await shadowTool("useradd", ["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name]);
  await shadowTool("chpasswd", [], `${name}:${TEST_PASSWORD}\n`);
  return name;
}

async function removeTestUser(name: string): Promise<void> {
  // -f: a session process still exiting does not keep the user
  await shadowTool("userdel", ["-f", name]).catch(() => undefined);
}

/**
 * useradd, chpasswd or userdel; another test process holding the lock on /etc/passwd (they run
 * side by side) is waited for, as their "try again later" says.
 */
async function shadowTool(tool: string, args: string[], input?: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      const child = promisify(execFile)(tool, args);
      if (input !== undefined) child.child.stdin!.end(input);
      await child;
      return;
    } catch (err) {
      const locked = /lock|try again/i.test(String((err as { stderr?: unknown }).stderr ?? ""));
      if (!locked || attempt >= 100) throw err;
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 100));
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** "type base64" of a .pub file, without its comment. */
const publicKey = (pub: string) => pub.trim().split(/\s+/).slice(0, 2).join(" ");

function idsOf(user: string): { uid: number; gid: number } {
  const [uid, gid] = ["-u", "-g"].map((f) =>
    Number(execFileSync("id", [f, user], { encoding: "utf8" }).trim()),
  );
  return { uid: uid!, gid: gid! };
}

/** The processes below `pid` (sshd's per-connection children), deepest last. */
function descendants(pid: number): number[] {
  return children(pid).flatMap((c) => [c, ...descendants(c)]);
}

function children(pid: number): number[] {
  let out = "";
  try {
    out = execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" });
  } catch {
    return []; // ps exits 1 when there are none
  }
  return out
    .split("\n")
    .map(Number)
    .filter((n) => n > 0);
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, "close");
  return port;
}

/** Resolves once the server sends its SSH banner; fails if it exits first. */
async function waitForBanner(port: number, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`sshd exited (${child.exitCode}): ${log()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("data", (d) => {
        s.destroy();
        resolve(d.toString().startsWith("SSH-"));
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`sshd did not answer on ${port}: ${log()}`);
}
