import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN, ROOT } from "./cli.js";

export type ChildRun = { code: number | null; stdout: string; stderr: string; ms: number; peakRssMb: number };

const TIME = "/usr/bin/time";

/**
 * Runs `stock-sync <args>` as its own process and reports its peak resident memory: exact from
 * GNU time (`%M`, the kernel's ru_maxrss) when installed, else the VmHWM high-water mark polled
 * from /proc until the process exits.
 */
export async function runMeasured(args: string[], env: NodeJS.ProcessEnv = {}): Promise<ChildRun> {
  const useTime = existsSync(TIME);
  const timeFile = join(tmpdir(), `stock-sync-time-${process.pid}-${Date.now()}`);
  const node = [process.execPath, BIN, ...args];
  const [cmd, ...argv] = useTime ? [TIME, "-f", "%M", "-o", timeFile, ...node] : node;
  const started = performance.now();
  const child = spawn(cmd!, argv, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const exited = once(child, "exit");
  const polled = useTime ? Promise.resolve(0) : pollPeakRss(child.pid!, exited);
  const [code] = (await exited) as [number | null];
  const ms = performance.now() - started;
  let peakRssMb = await polled;
  if (useTime) {
    const kb = Number((await readFile(timeFile, "utf8").catch(() => "")).trim().split("\n").at(-1));
    peakRssMb = Number.isFinite(kb) ? kb / 1024 : Number.NaN;
    await rm(timeFile, { force: true });
  }
  return { code, stdout, stderr, ms, peakRssMb };
}

/**
 * Peak resident memory of a running process in MB: its VmHWM high-water mark, polled from /proc
 * every 10 ms until `exited` settles (the kernel keeps the peak, so polling misses nothing).
 */
async function pollPeakRss(pid: number, exited: Promise<unknown>): Promise<number> {
  let peak = 0;
  let running = true;
  void exited.then(
    () => (running = false),
    () => (running = false),
  );
  while (running) {
    const status = await readFile(`/proc/${pid}/status`, "utf8").catch(() => "");
    peak = Math.max(peak, Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024);
    await new Promise((r) => setTimeout(r, 10));
  }
  return peak;
}
