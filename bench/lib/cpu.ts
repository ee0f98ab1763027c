/**
 * CPU time of processes, from /proc (Linux), so a bench can say how much CPU each side of a
 * figure used, not only how long it took: on a shared machine the wall time moves with the load,
 * the CPU a piece of work needs much less.
 */
import { readdirSync, readFileSync } from "node:fs";

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** Every process's parent and CPU ms (its own, plus its ended children's). */
export type CpuSnapshot = Map<number, { ppid: number; ms: number }>;

export function cpuSnapshot(): CpuSnapshot {
  const procs: CpuSnapshot = new Map();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      // after "(comm) ": state ppid … utime stime cutime cstime (fields 14–17 of stat(5))
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      procs.set(Number(name), { ppid: Number(f[1]), ms: ticks * TICK_MS });
    } catch {
      // it ended while we looked: its time shows in its parent's children's time from now on
    }
  }
  return procs;
}

/**
 * CPU ms of `root` and its descendants between two snapshots: a child that ended meanwhile is
 * counted through its parent's children's time.
 */
export function treeCpuMs(before: CpuSnapshot, after: CpuSnapshot, root: number): number {
  const children = new Map<number, number[]>();
  for (const [pid, p] of after) children.set(p.ppid, [...(children.get(p.ppid) ?? []), pid]);
  let ms = 0;
  const walk = (pid: number) => {
    ms += (after.get(pid)?.ms ?? 0) - (before.get(pid)?.ms ?? 0);
    for (const c of children.get(pid) ?? []) walk(c);
  };
  walk(root);
  return ms;
}

/** CPU ms a process has used so far, its own only (not its ended children's); NaN if gone. */
export function processCpuMs(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) * TICK_MS;
  } catch {
    return Number.NaN;
  }
}
