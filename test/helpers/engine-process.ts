import { type ChildProcess, spawn } from "node:child_process";
import { fromRoot } from "../../src/root.js";

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
