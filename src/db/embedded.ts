import { mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { ConnectorError } from "../errors.js";
import type { Db } from "./db.js";
import { ensurePrivateDir } from "./private-dir.js";
import { openPostgres } from "./pg.js";
import { pgliteDb } from "./pglite.js";
import { DEFAULT_SESSION_BOUNDS, SOCKET_NAME, type SessionBounds, serveOverWire } from "./pglite-server.js";
import { SessionLock } from "./session-lock.js";

/**
 * PGlite allows one process per data directory. The first process to open it (the owner) holds
 * `owner.lock`, serves the database over the PostgreSQL protocol on a Unix socket inside the
 * private (0700) data directory and names it in `endpoint.json`; every other process (a CLI
 * command next to `stock-sync start`) connects there with `pg`. When that owner exits (a
 * short-lived command), its clients take over: the next one opens the database itself.
 */
type Endpoint = { pid: number; socketDir: string };

const OWNER_WAIT_MS = 15_000;
// Unix socket paths are limited to 108 bytes (104 on macOS); a deeper data_dir gets a private temp dir.
const MAX_SOCKET_PATH = 100;

export type EmbeddedDb = Db & {
  readonly role: "owner" | "client";
  /** A `pg` connection string for this database (its Unix socket). */
  readonly url: string;
};

export type EmbeddedOptions = { session?: SessionBounds };

export async function openEmbedded(dataDir: string, opts: EmbeddedOptions = {}): Promise<EmbeddedDb> {
  const dir = resolve(dataDir);
  await ensurePrivateDir(dir, "database.data_dir");
  const first = await openOnce(dir, opts);
  return first.role === "owner" ? first : followOwner(dir, first, opts);
}

async function openOnce(dir: string, opts: EmbeddedOptions): Promise<EmbeddedDb> {
  const deadline = Date.now() + OWNER_WAIT_MS;
  for (;;) {
    if (await takeOwnership(dir)) return openAsOwner(dir, opts);
    const endpoint = await readEndpoint(dir);
    if (endpoint && isAlive(endpoint.pid)) return openAsClient(endpoint);
    if (Date.now() > deadline) {
      throw new ConnectorError(
        "DATABASE_UNAVAILABLE",
        `embedded database at ${dir} is held by another process that does not serve it (remove ${join(dir, "owner.lock")} if no stock-sync process runs)`,
      );
    }
    // The owner is starting (lock taken, endpoint not written yet) or closing: wait for it.
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Exclusive create of the lock file; a lock left by a dead process is taken over. */
async function takeOwnership(dir: string): Promise<boolean> {
  const lock = join(dir, "owner.lock");
  try {
    await writeFile(lock, String(process.pid), { flag: "wx", mode: 0o600 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const holder = Number(await readFile(lock, "utf8").catch(() => "0"));
  if (holder && isAlive(holder)) return false;
  // Move the stale lock aside under a unique name, so two processes cannot both remove it.
  const aside = `${lock}.stale-${process.pid}`;
  try {
    await rename(lock, aside);
    await rm(aside, { force: true });
  } catch {
    return false;
  }
  return takeOwnership(dir);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function readEndpoint(dir: string): Promise<Endpoint | null> {
  try {
    const e = JSON.parse(await readFile(join(dir, "endpoint.json"), "utf8")) as Partial<Endpoint>;
    return typeof e.pid === "number" && typeof e.socketDir === "string" ? (e as Endpoint) : null;
  } catch {
    return null;
  }
}

const socketUrl = (socketDir: string) =>
  `postgres://postgres@/postgres?host=${encodeURIComponent(socketDir)}`;

async function openAsOwner(dir: string, opts: EmbeddedOptions): Promise<EmbeddedDb> {
  let pg: PGlite;
  try {
    pg = await PGlite.create(join(dir, "pgdata"));
  } catch (err) {
    await rm(join(dir, "owner.lock"), { force: true });
    throw new ConnectorError(
      "DATABASE_UNAVAILABLE",
      `cannot open embedded database in ${dir}: ${String(err)}`,
      {
        cause: err,
      },
    );
  }
  const lock = new SessionLock();
  const ownSocketDir = join(dir, SOCKET_NAME).length <= MAX_SOCKET_PATH;
  // mkdtemp creates the directory 0700, like data_dir
  const socketDir = ownSocketDir ? dir : await mkdtemp(join(tmpdir(), "stock-sync-"));
  const wire = await serveOverWire(pg, lock, socketDir, opts.session ?? DEFAULT_SESSION_BOUNDS);
  const endpointFile = join(dir, "endpoint.json");
  const endpoint: Endpoint = { pid: process.pid, socketDir };
  await writeFile(`${endpointFile}.tmp`, JSON.stringify(endpoint), { mode: 0o600 });
  await rename(`${endpointFile}.tmp`, endpointFile);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    // Newcomers wait for the lock (and take over) instead of connecting to an owner that is leaving.
    await rm(endpointFile, { force: true });
    await wire.close();
    await lock.run(() => pg.close());
    if (!ownSocketDir) await rm(socketDir, { recursive: true, force: true });
    await rm(join(dir, "owner.lock"), { force: true });
  };
  return Object.assign(pgliteDb(pg, lock, close), { role: "owner" as const, url: socketUrl(socketDir) });
}

function openAsClient(endpoint: Endpoint): EmbeddedDb {
  const url = socketUrl(endpoint.socketDir);
  const db = openPostgres(url, { poolSize: 4, kind: "pglite" });
  // Notifications do not cross the wire server: this process finds new work by polling.
  return Object.assign(db, { role: "client" as const, url, listen: undefined });
}

// What a client sees when its owner has gone: the socket closed under it, or no socket any more.
const LOST_CODES = new Set(["ECONNRESET", "ECONNREFUSED", "ENOENT", "EPIPE", "57P01"]);
const LOST_MESSAGE = /connection terminated|ECONNRESET|ECONNREFUSED|ENOENT|EPIPE|not queryable/i;

function connectionLost(err: unknown): boolean {
  for (let e = err as { code?: unknown; message?: unknown; cause?: unknown } | undefined; e; ) {
    if (typeof e.code === "string" && LOST_CODES.has(e.code)) return true;
    if (typeof e.message === "string" && LOST_MESSAGE.test(e.message)) return true;
    e = e.cause as typeof e;
  }
  return false;
}

const HANDOVERS = 3;

/**
 * A client that outlives its owner (`start` next to a short-lived `status`): when a call fails
 * because the owner closed, it reopens the database (taking ownership, or joining the new owner)
 * and runs the call again. Safe because a closing owner takes the session between two of a
 * client's cycles before cutting it: a statement with no answer did not run, and an unfinished
 * transaction rolled back.
 */
function followOwner(dir: string, first: EmbeddedDb, opts: EmbeddedOptions): EmbeddedDb {
  let current = first;
  let switching: Promise<void> | null = null;
  let closed = false;

  const ownerGone = async (db: EmbeddedDb) => {
    if (db !== current) return true;
    const endpoint = await readEndpoint(dir);
    return !endpoint || !isAlive(endpoint.pid) || socketUrl(endpoint.socketDir) !== db.url;
  };
  const switchFrom = (db: EmbeddedDb) => {
    if (db !== current) return Promise.resolve();
    switching ??= (async () => {
      await db.close().catch(() => undefined);
      current = await openOnce(dir, opts);
    })().finally(() => {
      switching = null;
    });
    return switching;
  };
  async function call<T>(fn: (db: Db) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      if (switching) await switching;
      const db = current;
      try {
        return await fn(db);
      } catch (err) {
        if (closed || attempt >= HANDOVERS || !connectionLost(err) || !(await ownerGone(db))) throw err;
        await switchFrom(db);
      }
    }
  }
  return {
    kind: "pglite",
    get role() {
      return current.role;
    },
    get url() {
      return current.url;
    },
    query: (text, values) => call((db) => db.query(text, values)),
    tx: (fn, txOpts) => call((db) => db.tx(fn, txOpts)),
    async close() {
      closed = true;
      if (switching) await switching.catch(() => undefined);
      await current.close();
    },
  } as EmbeddedDb;
}
