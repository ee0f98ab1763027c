import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { signatureHeaders } from "../../src/subscriptions/signing.js";
import { startCli } from "../../test/helpers/cli.js";
import { ensureBuilt } from "./child.js";
import { createStockTable, stockQueriesYaml } from "./stock.js";
import type { BenchDb } from "./db.js";

/** The Standard Webhooks secret the benchmark OMS signs with (a fixed test value, not a real one). */
export const OMS_SECRET = "whsec_c3RvY2stc3luYy1iZW5jaG1hcmstc2VjcmV0LWtleQ==";

export type Connector = Awaited<ReturnType<typeof startCli>>;

/**
 * `stock-sync start` in its own process, as deployed: state in the bench database, inbound
 * webhooks signed with OMS_SECRET, the given subscriptions. The stock source is a 100-row bench
 * table, so the start-up full snapshot is negligible and never sent anywhere.
 */
export async function startConnector(
  bench: BenchDb,
  dir: string,
  opts: { port: number; subscriptions: string; delivery?: string; inbound?: string },
): Promise<Connector> {
  // the bundle, as deployed: after an edit to src/ the child would run it through tsx instead
  await ensureBuilt();
  await createStockTable(bench.db, 100);
  const config = join(dir, "connector.yaml");
  await writeFile(
    config,
    `database:
  url: "${bench.url}"
  data_dir: "${join(dir, "data")}"
source:
  url: "${bench.url}"
stock:
  capture: { mode: full_diff }
${stockQueriesYaml("  ")}
server:
  host: 127.0.0.1
  port: ${opts.port}
  inbound:
    secrets: ["${OMS_SECRET}"]
${opts.inbound ?? ""}subscriptions:
${opts.subscriptions}
${opts.delivery ?? ""}
log: { level: info, format: json }
`,
  );
  // for investigations: node's own flags for the connector, e.g. a CPU profile of it
  // (BENCH_CONNECTOR_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof"; NODE_OPTIONS refuses --cpu-prof)
  const nodeArgs = process.env.BENCH_CONNECTOR_NODE_ARGS?.split(" ").filter(Boolean) ?? [];
  return startCli(["--config", config], { timeoutMs: 60_000, nodeArgs });
}

/** A signed order event with a unique id, as the OMS would send it. */
export function signedEvent(n: number, nowSec = Math.floor(Date.now() / 1000)) {
  const id = `evt_${process.pid}_${n}`;
  const body = JSON.stringify({ id, type: "created", data: { order_id: `ord_${n % 1000}`, lines: 3 } });
  const headers = {
    "content-type": "application/json",
    ...signatureHeaders([OMS_SECRET], id, nowSec, body),
  };
  return { id, body, headers };
}
