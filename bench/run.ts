/**
 * `npm run bench [-- NAME...] [--quick]`: runs each benchmark script in its own process (a
 * crash or a leaked handle in one cannot skew or stop the next), prints its table, then a
 * summary of every row, and writes bench/results/latest.json.
 *
 * Internally `run.ts --script NAME --out FILE` is the child side: it runs one script and
 * writes its rows to FILE.
 */
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { dropStaleBenchDbs, serverInfo } from "./lib/db.js";
import { type BenchOptions, formatNotes, formatTable, type Row } from "./lib/report.js";

/** In the order they run; each is bench/<name>.ts exporting `run(opts): Promise<Row[]>`. */
export const SCRIPTS = [
  "full",
  "formats",
  "delta",
  "delivery",
  "backlog",
  "inbound",
  "latency",
  "ratelimit",
  "spread",
  "sftp",
] as const;
/** Named scripts that `npm run bench` alone skips (too long for the 10-minute budget). */
export const EXTRA = ["full5m"] as const;

const BENCH_DIR = fileURLToPath(new URL(".", import.meta.url));
const ROOT = fileURLToPath(new URL("..", import.meta.url));

type ScriptResult = { name: string; seconds: number; rows: Row[]; error?: string };

async function main(argv: string[]): Promise<number> {
  const quick = argv.includes("--quick");
  const scriptAt = argv.indexOf("--script");
  if (scriptAt >= 0) return runChild(argv[scriptAt + 1]!, argv[argv.indexOf("--out") + 1]!, { quick });
  const names = argv.filter((a) => !a.startsWith("--"));
  const known: readonly string[] = [...SCRIPTS, ...EXTRA];
  const unknown = names.filter((n) => !known.includes(n));
  if (unknown.length) {
    process.stderr.write(`unknown benchmark ${unknown.join(", ")}; choose from ${known.join(", ")}\n`);
    return 2;
  }
  return runAll(names.length ? names : [...SCRIPTS], { quick });
}

async function runAll(names: string[], opts: BenchOptions): Promise<number> {
  const stale = await dropStaleBenchDbs();
  if (stale.length) process.stderr.write(`dropped stale benchmark databases: ${stale.join(", ")}\n`);
  const machine = await describeMachine();
  process.stdout.write(`${machineLine(machine)}${opts.quick ? " — QUICK (tiny sizes, smoke only)" : ""}\n`);
  const started = performance.now();
  const results: ScriptResult[] = [];
  for (const name of names) {
    process.stdout.write(`\n## ${name}\n`);
    const result = await spawnScript(name, opts);
    results.push(result);
    if (result.rows.length) process.stdout.write(`${formatTable(result.rows)}\n`);
    const notes = formatNotes(result.rows);
    if (notes) process.stdout.write(`${notes}\n`);
    if (result.error) process.stdout.write(`!! ${name} failed: ${result.error}\n`);
  }
  const seconds = (performance.now() - started) / 1000;
  const rows = results.flatMap((r) => r.rows);
  process.stdout.write(`\n## summary (${seconds.toFixed(0)} s)\n${formatTable(rows)}\n`);
  const failed = results.filter((r) => r.error);
  for (const f of failed) process.stdout.write(`!! ${f.name} failed: ${f.error}\n`);
  const missed = rows.filter((r) => r.met === false).length;
  process.stdout.write(`goals met ${rows.filter((r) => r.met).length}, missed ${missed}\n`);
  await mkdir(join(BENCH_DIR, "results"), { recursive: true });
  await writeFile(
    join(BENCH_DIR, "results", "latest.json"),
    `${JSON.stringify({ finishedAt: new Date().toISOString(), quick: opts.quick, seconds, machine, results }, null, 2)}\n`,
  );
  // Missed goals are results, not failures; a script that could not run is.
  return failed.length ? 1 : 0;
}

async function spawnScript(name: string, opts: BenchOptions): Promise<ScriptResult> {
  const out = join(tmpdir(), `stock-sync-bench-${process.pid}-${name}.json`);
  const started = performance.now();
  const args = ["--import", "tsx", join(BENCH_DIR, "run.ts"), "--script", name, "--out", out];
  const child = spawn(process.execPath, opts.quick ? [...args, "--quick"] : args, {
    cwd: ROOT,
    stdio: ["ignore", "inherit", "inherit"],
  });
  const [code] = await once(child, "exit");
  const seconds = (performance.now() - started) / 1000;
  const written = await readFile(out, "utf8").catch(() => null);
  await rm(out, { force: true });
  const parsed = written ? (JSON.parse(written) as { rows: Row[]; error?: string }) : null;
  const error = parsed?.error ?? (code === 0 ? undefined : `exited with ${code}`);
  return { name, seconds, rows: parsed?.rows ?? [], ...(error ? { error } : {}) };
}

async function runChild(name: string, out: string, opts: BenchOptions): Promise<number> {
  try {
    const mod = (await import(`./${name}.ts`)) as { run(o: BenchOptions): Promise<Row[]> };
    const rows = await mod.run(opts);
    await writeFile(out, JSON.stringify({ rows }));
    return 0;
  } catch (err) {
    const error = (err as Error).stack ?? String(err);
    process.stderr.write(`${error}\n`);
    await writeFile(out, JSON.stringify({ rows: [], error: (err as Error).message ?? String(err) }));
    return 1;
  }
}

type Machine = {
  cores: number;
  cpu: string;
  memoryGb: number;
  node: string;
  postgres: string;
  synchronousCommit: string;
  fsync: string;
};

async function describeMachine(): Promise<Machine> {
  const server = await serverInfo();
  const { totalmem } = await import("node:os");
  return {
    cores: cpus().length,
    cpu: cpus()[0]?.model.trim() ?? "unknown",
    memoryGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    postgres: server.version,
    synchronousCommit: server.synchronousCommit,
    fsync: server.fsync,
  };
}

const machineLine = (m: Machine) =>
  `machine: ${m.cores} cores (${m.cpu}), ${m.memoryGb} GB, Node ${m.node}, PostgreSQL ${m.postgres} (synchronous_commit=${m.synchronousCommit}, fsync=${m.fsync})`;

// Exit explicitly: a client library's idle keep-alive socket or timer must not hold a finished
// script (or the runner) open for another 30 s.
process.exit(await main(process.argv.slice(2)));
