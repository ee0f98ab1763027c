import { mkdir, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import type { Queryable, Row } from "../../src/db/db.js";

const RESULTS = fileURLToPath(new URL("../results/", import.meta.url));

/**
 * Runs each call with every statement prefixed by `EXPLAIN (ANALYZE, BUFFERS)`, so the plans are
 * those of the product's own SQL and arguments, and writes them to bench/results/<label>.txt.
 */
export async function writeExplains(
  label: string,
  db: Queryable,
  calls: { name: string; call: (db: Queryable) => Promise<unknown> }[],
): Promise<string> {
  const out: string[] = [];
  for (const c of calls) {
    const explaining: Queryable = {
      async query<T extends Row = Row>(text: string, values?: readonly unknown[]) {
        const { rows } = await db.query<{ "QUERY PLAN": string }>(
          `explain (analyze, buffers) ${text}`,
          values,
        );
        out.push(
          `-- ${c.name}\n${text.replace(/\s+/g, " ").trim()}\n${rows.map((r) => r["QUERY PLAN"]).join("\n")}\n`,
        );
        return { rows: [] as T[], rowCount: 0 };
      },
    };
    await c.call(explaining);
  }
  await mkdir(RESULTS, { recursive: true });
  const file = `${RESULTS}${label}.txt`;
  await writeFile(file, out.join("\n"));
  return file;
}

/** What the server spent on every statement of `call` (planning + execution, ms). */
export async function serverMs(db: Queryable, call: (db: Queryable) => Promise<unknown>): Promise<number> {
  let ms = 0;
  const timing: Queryable = {
    async query<T extends Row = Row>(text: string, values?: readonly unknown[]) {
      const { rows } = await db.query<{
        "QUERY PLAN": [{ "Planning Time": number; "Execution Time": number }];
      }>(`explain (analyze, timing off, format json) ${text}`, values);
      const plan = rows[0]!["QUERY PLAN"][0];
      ms += plan["Planning Time"] + plan["Execution Time"];
      return { rows: [] as T[], rowCount: 0 };
    },
  };
  await call(timing);
  return ms;
}
