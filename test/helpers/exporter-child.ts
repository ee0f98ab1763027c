/**
 * A stock run in a process of its own (run with `node --import tsx`), to be killed (-9) at a
 * known step: argv[2] is the database URL (source = state, as in the stock tests), argv[3] the
 * run's kind (full | delta), argv[4] a pattern, argv[5] the config YAML, argv[6] a temp folder
 * for its parts (the test removes it). The first query whose text matches it, at top
 * level or in a transaction, is held forever and `held` is printed: the test kills it there.
 * The stock lock lasts 2 s, so another process can run soon after the kill.
 */
import { systemClock } from "../../src/clock.js";
import type { Db, Tx } from "../../src/db/db.js";
import { openPostgres } from "../../src/db/pg.js";
import { createExporter } from "../../src/export/exporter.js";
import type { RunKind } from "../../src/export/state.js";
import { buildSubscriptions } from "../../src/subscriptions/subscriptions.js";
import { quietLog, testConfig } from "./engine.js";

const [url, kind, pattern, yaml, tmpDir] = process.argv.slice(2);
const match = new RegExp(pattern!);
const base = openPostgres(url!, { poolSize: 4 });

const hold = (text: string) => {
  if (!match.test(text)) return;
  process.stdout.write("held\n");
  return new Promise<never>(() => undefined);
};
const holding = <T extends Db | Tx>(target: T): T =>
  new Proxy(target, {
    get(t, prop) {
      if (prop === "query")
        return async (text: string, values?: readonly unknown[]) => {
          await hold(text);
          return t.query(text, values);
        };
      if (prop === "tx")
        return (fn: (tx: Tx) => Promise<unknown>, opts?: unknown) =>
          (t as Db).tx((tx) => fn(holding(tx)), opts as never);
      const v = Reflect.get(t, prop, t);
      return typeof v === "function" ? v.bind(t) : v;
    },
  });

const db = holding(base);
const config = testConfig(yaml!);
const exporter = createExporter(
  {
    db,
    source: db,
    clock: systemClock,
    log: quietLog,
    subscriptions: buildSubscriptions(config),
    stock: config.stock,
    tmpDir: tmpDir!,
    notifyMinIntervalMs: config.notifications.min_interval,
    statePoolSize: 4,
  },
  { lockMs: 2000 },
);
const result = await exporter.run(kind as RunKind, { trigger: "test" });
process.stdout.write(`finished ${result.status}\n`);
await base.close();
