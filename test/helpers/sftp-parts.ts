/**
 * What the fifo sftp:// tests (issue 13: staging, stalls, stop, fsync) share: one stock
 * subscription uploading to a folder of the test sshd, and stock parts to send through it.
 */
import type { TestEngine } from "./engine.js";
import type { Sshd } from "./sshd.js";

export type FifoSftpOptions = {
  /** `timeout` of the subscription, e.g. "10s". */
  timeout: string;
  /** A port in front of the server (a proxy); the server's host key is checked as ever. */
  via?: number;
  /** This many retries 100 ms apart (the subscription's default intervals otherwise). */
  retries?: number;
  /** Lines of the config's `delivery:` section, e.g. ["shutdown_grace: 1s"]. */
  delivery?: string[];
};

/** The config of one `ordering: fifo` stock subscription `name` uploading to `dir` on `sshd`. */
export function fifoSftpYaml(sshd: Sshd, name: string, dir: string, opts: FifoSftpOptions): string {
  const url = opts.via === undefined ? sshd.url(dir) : `sftp://${sshd.user}@127.0.0.1:${opts.via}${dir}`;
  return [
    ...(opts.delivery ? ["delivery:", ...opts.delivery.map((line) => `  ${line}`)] : []),
    "subscriptions:",
    `  - name: ${name}`,
    "    subjects: [stock.delta]",
    "    ordering: fifo",
    `    url: "${url}"`,
    `    timeout: ${opts.timeout}`,
    ...(opts.retries ? [`    retry_intervals: [${Array(opts.retries).fill("100ms").join(", ")}]`] : []),
    "    sftp:",
    `      host_key: "${sshd.hostKey}"`,
    `      private_key: ${JSON.stringify(sshd.clientKey)}`,
    "",
  ].join("\n");
}

/** Enqueues `n` stock parts of `lines` CSV lines (~200 KB by default), each with its own bytes. */
export async function enqueueParts(engine: TestEngine, n: number, lines = 200_000 / 12): Promise<void> {
  for (let i = 1; i <= n; i++) {
    await engine.enqueue({
      subject: "stock.delta",
      payload: `sku,location,quantity\n${`SKU-${i},L,${i}\n`.repeat(lines)}`,
      contentType: "text/csv",
      headers: { "stock-sync-kind": "delta", "stock-sync-part": `${i}/${n}` },
      sequenced: true,
    });
  }
}
