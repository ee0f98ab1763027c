#!/usr/bin/env node
// The `stock-sync` command. Sources are TypeScript, loaded through tsx so the clone needs no
// build step: `npm ci && npx stock-sync …` runs what is in src/.
import { register } from "tsx/esm/api";

register();
const { main } = await import("./cli.ts");
process.exitCode = await main(process.argv);
