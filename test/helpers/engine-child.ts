/**
 * A delivery engine in a process of its own (run with `node --import tsx`): argv[2] is the state
 * database URL, argv[3] the config YAML. Prints `ready <owner>` once it runs; SIGTERM stops it
 * the way `stock-sync start` does (stop, then exit 0).
 */
import { openPostgres } from "../../src/db/pg.js";
import { startEngine, testConfig } from "./engine.js";

const [url, yaml] = process.argv.slice(2);
const db = openPostgres(url!, { poolSize: 4 });
const e = await startEngine(db, testConfig(yaml!));
process.stdout.write(`ready ${e.engine.owner}\n`);
process.once("SIGTERM", () => {
  void e
    .stop()
    .then(() => db.close())
    .then(() => process.exit(0));
});
