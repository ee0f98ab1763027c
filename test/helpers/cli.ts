import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

export const BIN = fileURLToPath(new URL("../../src/bin.js", import.meta.url));
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export type RunResult = { code: number | null; stdout: string; stderr: string };

/** Runs `stock-sync …` as a separate process, as a user would. */
export async function runCli(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...cleanEnv(), ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = collect(child);
  const [code] = await once(child, "exit");
  return { code: code as number | null, ...out() };
}

/** Starts `stock-sync start` and resolves once it logged its URL. */
/**
 * The `stock-sync start` processes of this test process still running: killed when it exits, so
 * one a test lost track of (it timed out, or failed before its cleanup) does not outlive it.
 */
const running = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

export async function startCli(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; nodeArgs?: string[] } = {},
): Promise<{
  child: ChildProcess;
  url: string;
  output: () => RunResult;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}> {
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), BIN, "start", ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...cleanEnv(), ...opts.env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = collect(child);
  running.add(child);
  child.once("exit", () => running.delete(child));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => {
        // nobody gets this child to stop it: it goes now, or it outlives its test (and its worker)
        child.kill("SIGKILL");
        reject(new Error(`no start within timeout:\n${out().stderr}`));
      },
      // a bound, not a speed check: an embedded start boots PGlite, which a loaded machine slows
      opts.timeoutMs ?? 45_000,
    );
    const onData = () => {
      const m = /"url":"(http:\/\/[^"]+)".*stock-sync started/.exec(out().stderr);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stderr!.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code} before starting:\n${out().stderr}`));
    });
  });
  return {
    child,
    url,
    output: () => ({ code: child.exitCode, ...out() }),
    async stop(signal = "SIGINT") {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill(signal);
      const [code] = await once(child, "exit");
      return code as number | null;
    },
  };
}

function collect(child: ChildProcess) {
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  return () => ({ stdout, stderr });
}

/** The test runner's environment minus anything that would change the connector's config. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of [
    "DATABASE_URL",
    "SOURCE_DATABASE_URL",
    "STOCK_SYNC_CONFIG",
    "STOCK_SYNC_ADMIN_TOKEN",
    "OMS_WEBHOOK_SECRET",
    "SMTP_URL",
  ]) {
    delete env[k];
  }
  return env;
}
