import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { PGlite } from "@electric-sql/pglite";
import { ConnectorError } from "../errors.js";
import type { Db } from "./db.js";
import { openPostgres } from "./pg.js";
import { pgliteDb } from "./pglite.js";
import { serveOverWire } from "./pglite-server.js";
import { SessionLock } from "./session-lock.js";

/**
 * PGlite allows one process per data directory. The first process to open it (the owner) holds
 * `owner.lock`, serves the database over the PostgreSQL protocol on 127.0.0.1 and writes the port
 * to `endpoint.json`; every other process (a CLI command next to `stock-sync start`) connects there
 * with `pg`. The owner answers every command without needing a running server.
 */
type Endpoint = { pid: number; port: number };

const OWNER_WAIT_MS = 15_000;

export type EmbeddedDb = Db & { role: "owner" | "client"; port: number };

export async function openEmbedded(dataDir: string): Promise<EmbeddedDb> {
  const dir = resolve(dataDir);
  await mkdir(dir, { recursive: true });
  const deadline = Date.now() + OWNER_WAIT_MS;
  for (;;) {
    if (await takeOwnership(dir)) return openAsOwner(dir);
    const endpoint = await readEndpoint(dir);
    if (endpoint && isAlive(endpoint.pid)) return openAsClient(endpoint);
    if (Date.now() > deadline) {
      throw new ConnectorError(
        "DATABASE_UNAVAILABLE",
        `embedded database at ${dir} is held by another process that does not serve it (remove ${join(dir, "owner.lock")} if no stock-sync process runs)`,
      );
    }
    // The owner is starting (lock taken, endpoint not written yet): wait for it.
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Exclusive create of the lock file; a lock left by a dead process is taken over. */
async function takeOwnership(dir: string): Promise<boolean> {
  const lock = join(dir, "owner.lock");
  try {
    await writeFile(lock, String(process.pid), { flag: "wx" });
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
    return JSON.parse(await readFile(join(dir, "endpoint.json"), "utf8")) as Endpoint;
  } catch {
    return null;
  }
}

async function openAsOwner(dir: string): Promise<EmbeddedDb> {
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
  const wire = await serveOverWire(pg, lock);
  const endpointFile = join(dir, "endpoint.json");
  await writeFile(`${endpointFile}.tmp`, JSON.stringify({ pid: process.pid, port: wire.port }));
  await rename(`${endpointFile}.tmp`, endpointFile);
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await wire.close();
    await lock.run(() => pg.close());
    await rm(endpointFile, { force: true });
    await rm(join(dir, "owner.lock"), { force: true });
  };
  return Object.assign(pgliteDb(pg, lock, close), { role: "owner" as const, port: wire.port });
}

function openAsClient(endpoint: Endpoint): EmbeddedDb {
  const db = openPostgres(`postgres://postgres@127.0.0.1:${endpoint.port}/postgres`, {
    poolSize: 4,
    kind: "pglite",
  });
  // Notifications do not cross the wire server: this process finds new work by polling.
  return Object.assign(db, { role: "client" as const, port: endpoint.port, listen: undefined });
}
