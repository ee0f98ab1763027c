#!/usr/bin/env node
// The `stock-sync` command. `npm ci` bundles src/ into dist/ (the `prepare` script), which starts
// ~30 MB lighter than compiling TypeScript at run time. When there is no build, or src/ changed
// since it (a developer's edit, a checkout), it runs src/ through tsx instead: never stale code.
// NODE_DEBUG=stock-sync tells which one ran.
import { debuglog } from "node:util";
import { distFreshness } from "./bundle.js";

const debug = debuglog("stock-sync");
const dist = distFreshness();
let cli;
if (dist.fresh) {
  debug("running %s", dist.entry);
  cli = await import(dist.entry);
} else {
  debug("running src/ through tsx: %s", dist.reason);
  const { register } = await import("tsx/esm/api");
  register();
  cli = await import("./cli.ts");
}
process.exitCode = await cli.main(process.argv);
