/**
 * SFTP delivery (issue 13): a 1M-row full (20 parts of 50,000 rows) delivered by the product's
 * engine to a local OpenSSH sshd (the tests' helper), against OpenSSH's own client, `sftp -b`,
 * uploading the very same 20 files to the same server in the same run. The snapshot is taken
 * first (`stock-sync snapshot --force`, engine stopped); the figure is the delivery alone: from
 * the engine's start to the 20th part recorded as delivered (reads from the state database,
 * uploads, renames, records included).
 */
import { execFileSync } from "node:child_process";
import { chmod, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfig } from "../src/config/index.js";
import { startEngine } from "../test/helpers/engine.js";
import { SftpDestination } from "../src/sftp/destination.js";
import { sftpTrace } from "../src/sftp/trace.js";
import { SSHD, startSshd, type Sshd } from "../test/helpers/sshd.js";
import { runStockSync } from "./lib/child.js";
import { type BenchDb, createBenchDb } from "./lib/db.js";
import type { BenchOptions, Row } from "./lib/report.js";
import { cpuSnapshot, treeCpuMs } from "./lib/cpu.js";
import { serverCpu } from "./lib/timing.js";
import { progress, repeat, summarize } from "./lib/stats.js";
import { createStockTable, stockQueriesYaml } from "./lib/stock.js";

const GOAL = 0.7;
const PHASES = ["connect", "open", "write", "fsync", "close", "rename"];
/** Staging (fifo: the part behind the one sent, uploaded meanwhile): its time overlaps the rest. */
const STAGE = "stage";
const med = (xs: number[]) => summarize(xs).median.toFixed(0);

export async function run(opts: BenchOptions): Promise<Row[]> {
  execFileSync(SSHD, ["-V"], { stdio: "ignore" }); // fails early without openssh-server
  const rows = opts.quick ? 500 : 1_000_000;
  const partRows = opts.quick ? 100 : 50_000;
  const parts = Math.ceil(rows / partRows);
  const bench = await createBenchDb("sftp");
  const sshd = await startSshd();
  const dir = await mkdtemp(join(tmpdir(), "stock-sync-bench-sftp-"));
  try {
    progress(`sftp: filling ${rows.toLocaleString("en-US")} rows`);
    await createStockTable(bench.db, rows);
    const drop = await remoteFolder(sshd, "drop");
    const config = join(dir, "config.yaml");
    const yaml = configYaml(bench, sshd, drop, partRows);
    await writeFile(config, yaml);
    await chmod(sshd.clientKeyFile, 0o600); // OpenSSH's client refuses a key others can read
    const runs = await repeat("sftp", { warmups: 1, runs: 3 }, async () => {
      await clear(drop);
      const snap = await runStockSync(["--config", config, "snapshot", "--force"]);
      if (snap.code !== 0) throw new Error(`snapshot failed (${snap.code}): ${snap.stderr}`);
      const { ms: engineMs, split } = await deliver(bench, yaml, parts, sshd);
      const files = (await readdir(drop)).filter((n) => !n.startsWith(".")).sort();
      if (files.length !== parts) throw new Error(`${files.length} files in the folder, expected ${parts}`);
      let bytes = 0;
      for (const f of files) bytes += (await stat(join(drop, f))).size;
      const { ms: sftpMs, cpu: sftpCpu } = await sftpBatch(sshd, dir, drop, files);
      const aloneMs = await destinationAlone(sshd, yaml, drop, files);
      return { engineMs, split, sftpMs, sftpCpu, aloneMs, bytes };
    });
    const mbps = (ms: number, bytes: number) => bytes / 1024 / 1024 / (ms / 1000);
    const ratio = summarize(runs.map((r) => r.sftpMs / r.engineMs));
    return [
      {
        figure: `full ${rows >= 1_000_000 ? `${rows / 1_000_000}M` : rows} rows (${parts} parts) → sftp://`,
        unit: "MB/s",
        value: summarize(runs.map((r) => mbps(r.engineMs, r.bytes))),
        baseline: {
          label: "sftp -b",
          unit: "MB/s",
          value: summarize(runs.map((r) => mbps(r.sftpMs, r.bytes))),
        },
        ratio,
        goal: `≥ ${GOAL}× sftp -b`,
        met: ratio.median >= GOAL,
        note:
          `${(runs[0]!.bytes / 1024 / 1024).toFixed(1)} MB a run; engine from start to the last part recorded, ` +
          `sftp -b from spawn to exit (no fsync); medians: engine ${med(runs.map((r) => r.engineMs))} ms = ` +
          `${med(runs.map((r) => r.split.first))} ms to the first upload's start + in the SFTP sender ` +
          `${med(runs.map((r) => r.split.phases.send ?? 0))} ms (${PHASES.map((p) => `${p} ${med(runs.map((r) => r.split.phases[p] ?? 0))}`).join(", ")}) ` +
          `+ recording outcomes ${med(runs.map((r) => r.split.record))} ms + from a record to the next upload ` +
          `${med(runs.map((r) => r.split.next))} ms (backlog read, checks, of which waiting for the part's staging to end ` +
          `${med(runs.map((r) => r.split.phases.wait ?? 0))} ms); staging the next part meanwhile ` +
          `${med(runs.map((r) => r.split.phases[STAGE] ?? 0))} ms (overlapped; open, write, fsync and close above ` +
          `include it); sftp -b ${med(runs.map((r) => r.sftpMs))} ms. ` +
          `CPU used (ms, medians): engine run ${med(runs.map((r) => r.split.cpu.engine + r.split.cpu.sshd + r.split.cpu.pg))} ` +
          `(the engine's process ${med(runs.map((r) => r.split.cpu.engine))}, sshd ${med(runs.map((r) => r.split.cpu.sshd))}, ` +
          `PostgreSQL ${med(runs.map((r) => r.split.cpu.pg))}); sftp -b ${med(runs.map((r) => r.sftpCpu.client + r.sftpCpu.sshd))} ` +
          `(the client ${med(runs.map((r) => r.sftpCpu.client))}, sshd ${med(runs.map((r) => r.sftpCpu.sshd))})`,
      },
      {
        figure: "the same 20 files, SFTP destination alone, one at a time",
        unit: "MB/s",
        value: summarize(runs.map((r) => mbps(r.aloneMs, r.bytes))),
        baseline: {
          label: "sftp -b",
          unit: "MB/s",
          value: summarize(runs.map((r) => mbps(r.sftpMs, r.bytes))),
        },
        ratio: summarize(runs.map((r) => r.sftpMs / r.aloneMs)),
        goal: "(info)",
        met: null,
        note:
          "what fifo delivery could reach with no engine at all: the product's SftpDestination (connect, " +
          "then per part open, pipelined writes, fsync, close, rename) given the files one after another",
      },
    ];
  } finally {
    await sshd.close();
    await bench.drop();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Where a run's time went (ms, summed over the parts). */
type Split = {
  /** Engine start to the first upload's start (lease, first backlog read, checks). */
  first: number;
  /** Inside the SFTP sender, by phase (connect, open, write, fsync, close, rename, send = all). */
  phases: Record<string, number>;
  /** From a part's upload end to its outcome recorded. */
  record: number;
  /** From a part's outcome recorded to the next part's upload start (backlog read, checks). */
  next: number;
  /**
   * CPU ms used meanwhile: this process (the engine, its SSH and PostgreSQL clients), sshd (with
   * internal-sftp) and the state database's backends. On a shared machine the wall time moves with
   * the load; what each side needs of the 2 cores much less.
   */
  cpu: { engine: number; sshd: number; pg: number };
};

/** Starts the engine on the enqueued full and times it until every part is recorded delivered. */
async function deliver(
  bench: BenchDb,
  yaml: string,
  parts: number,
  sshd: Sshd,
): Promise<{ ms: number; split: Split }> {
  let delivered = 0;
  let done: () => void = () => {};
  let fail: (err: Error) => void = () => {};
  const all = new Promise<void>((resolve, reject) => {
    done = resolve;
    fail = reject;
  });
  const phases: Record<string, number> = {};
  const sends: { start: number; end: number }[] = [];
  const recorded: number[] = [];
  sftpTrace.on = (phase, start, end) => {
    phases[phase] = (phases[phase] ?? 0) + (end - start);
    if (phase === "send") sends.push({ start, end });
  };
  // the bench's own reads (the config, the CPU counters of each process) come before the start
  const config = loadConfig(yaml, {}).config;
  const pg = await serverCpu(bench.db);
  const procs0 = cpuSnapshot();
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  const engine = await startEngine(bench.db, config, {
    onAttempt: (_s, _r, outcome) => {
      recorded.push(performance.now());
      if (outcome !== "delivered") fail(new Error(`an SFTP attempt failed: ${outcome}`));
      else if (++delivered === parts) done();
    },
  });
  try {
    await all;
    const ms = performance.now() - started;
    const used = process.cpuUsage(cpu0);
    const procs1 = cpuSnapshot();
    const cpu = {
      engine: (used.user + used.system) / 1000,
      sshd: treeCpuMs(procs0, procs1, sshd.pid()!),
      pg: (await pg.stop()) ?? Number.NaN,
    };
    let record = 0;
    let next = 0;
    // sends end in order (one at a time, or in order under fifo); recorded[i] is part i's record
    sends.sort((a, b) => a.end - b.end);
    for (let i = 0; i < sends.length; i++) {
      record += Math.max(0, recorded[i]! - sends[i]!.end);
      if (i > 0) next += Math.max(0, sends[i]!.start - recorded[i - 1]!);
    }
    return { ms, split: { first: sends[0]!.start - started, phases, record, next, cpu } };
  } finally {
    sftpTrace.on = undefined;
    await engine.stop();
  }
}

/** The product's destination, without the engine: the floor of one-part-at-a-time delivery. */
async function destinationAlone(sshd: Sshd, yaml: string, drop: string, files: string[]): Promise<number> {
  const target = await remoteFolder(sshd, "alone");
  await clear(target);
  const sub = loadConfig(yaml, {}).config.subscriptions[0]!;
  const bodies = await Promise.all(files.map((f) => readFile(join(drop, f))));
  const dest = new SftpDestination(sshd.url(target), sub.sftp!, 1);
  const started = performance.now();
  try {
    for (const [i, fileName] of files.entries()) {
      const r = await dest.send({ url: sshd.url(target), fileName, body: bodies[i]!, timeoutMs: 30_000 });
      if (r.kind !== "response") throw new Error(`upload of ${fileName} failed: ${r.message}`);
    }
    return performance.now() - started;
  } finally {
    dest.close();
  }
}

/** OpenSSH's client uploading the same files into a sibling folder, one batch, one connection. */
async function sftpBatch(
  sshd: Sshd,
  dir: string,
  drop: string,
  files: string[],
): Promise<{ ms: number; cpu: { client: number; sshd: number } }> {
  const target = await remoteFolder(sshd, "sftp-b");
  await clear(target);
  const batch = join(dir, "batch");
  await writeFile(batch, files.map((f) => `put ${join(drop, f)} ${join(target, f)}\n`).join(""));
  const started = performance.now();
  const procs0 = cpuSnapshot();
  execFileSync(
    "sftp",
    [
      "-q",
      "-b",
      batch,
      "-i",
      sshd.clientKeyFile,
      "-P",
      String(sshd.port),
      "-o",
      "StrictHostKeyChecking=no",
      "-o",
      "UserKnownHostsFile=/dev/null",
      "-o",
      "BatchMode=yes",
      `${sshd.user}@${sshd.host}`,
    ],
    { stdio: "ignore" },
  );
  const ms = performance.now() - started;
  const procs1 = cpuSnapshot();
  // the client (sftp and the ssh it ran) has ended: its time is in this process's children's time
  const self = (snap: typeof procs0) => snap.get(process.pid)?.ms ?? 0;
  return { ms, cpu: { client: self(procs1) - self(procs0), sshd: treeCpuMs(procs0, procs1, sshd.pid()!) } };
}

/**
 * A remote folder; with SFTP_BENCH_TMPFS=1 (and root) on a tmpfs of its own, which takes the
 * disk out of the figure: the server's fsync and PostgreSQL's commits then no longer share it.
 */
async function remoteFolder(sshd: Sshd, name: string): Promise<string> {
  const tmpfs = process.env.SFTP_BENCH_TMPFS === "1" ? await sshd.smallDisk(name, 512 * 1024 * 1024) : null;
  return tmpfs ?? sshd.folder(name);
}

async function clear(folder: string): Promise<void> {
  for (const f of await readdir(folder)) await rm(join(folder, f), { force: true });
}

function configYaml(bench: BenchDb, sshd: Sshd, drop: string, partRows: number): string {
  return `database:
  url: "${bench.url}"
source:
  url: "${bench.url}"
stock:
  capture: { mode: full_diff }
  format: { part_rows: ${partRows} }
${stockQueriesYaml("  ")}
subscriptions:
  - name: sftp
    subjects: [stock.full]
    url: "${sshd.url(drop)}"
    timeout: 30s
    sftp:
      host_key: "${sshd.hostKey}"
      private_key_file: ${sshd.clientKeyFile}
log: { level: warn, format: json }
`;
}
