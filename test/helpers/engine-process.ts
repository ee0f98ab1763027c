import { type ChildProcess, spawn } from "node:child_process";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fromRoot } from "../../src/root.js";
import { migratedDataDir } from "./data-dir.js";
import { type Backend, createTestDb } from "./db.js";

export type EngineProcess = {
  child: ChildProcess;
  owner: string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
};

/**
 * Starts test/helpers/engine-child.ts in a process of its own, optionally behind a command
 * prefix (e.g. `unshare --pid --fork` for another PID namespace). Resolves once it sends.
 */
export async function startEngineProcess(
  url: string,
  yaml: string,
  prefix: string[] = [],
): Promise<EngineProcess> {
  const args = [
    ...prefix,
    process.execPath,
    "--import",
    "tsx",
    fromRoot("test/helpers/engine-child.ts"),
    url,
    yaml,
  ];
  const child = spawn(args[0]!, args.slice(1), { stdio: ["ignore", "pipe", "inherit"], cwd: fromRoot(".") });
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const owner = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /ready (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`engine process exited (${code}) before it was ready`)));
  });
  return {
    child,
    owner,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

export type CrashStateDb = {
  /** Writes `<dir>/<backend>.yaml` for `stock-sync start` with these `subscriptions:` entries. */
  writeConfig(subscriptions: string): Promise<string>;
  /** How another process reaches the state database: the server's URL, or the embedded owner's socket. */
  stateUrl(): Promise<string>;
  drop(): Promise<void>;
};

/**
 * The state database of a `stock-sync start` that a test kills (-9) and starts again: a fresh
 * PostgreSQL test database (the demo source beside it), or the embedded one under `<dir>/data`,
 * created and migrated beforehand (`migratedDataDir`): these tests are about the kill, not about
 * a first start creating its database, which costs PGlite 4-11 s of initdb.
 */
export async function crashStateDb(backend: Backend, dir: string): Promise<CrashStateDb> {
  const testDb = backend === "postgres" ? await createTestDb("postgres") : null;
  const dataDir = join(dir, "data");
  if (!testDb) await migratedDataDir(dataDir);
  const database = testDb ? `  url: "${testDb.url}"\nsource:\n  demo: true\n` : `  data_dir: ${dataDir}\n`;
  return {
    async writeConfig(subscriptions) {
      const path = join(dir, `${backend}.yaml`);
      await writeFile(
        path,
        `database:\n${database}server:\n  port: 0\nstock:\n  simulator:\n    enabled: false\nsubscriptions:\n${subscriptions}`,
      );
      return path;
    },
    async stateUrl() {
      if (testDb?.url) return testDb.url;
      const { socketDir } = JSON.parse(await readFile(join(dataDir, "endpoint.json"), "utf8"));
      return `postgres://postgres@/postgres?host=${encodeURIComponent(socketDir)}`;
    },
    drop: async () => testDb?.drop(),
  };
}
