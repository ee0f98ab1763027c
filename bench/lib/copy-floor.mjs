// The floor of the export half for a Node process: start node, load `pg` and pg-copy-streams,
// COPY the query to stdout, and write it to a file, nothing else (no config, no parts, no
// checks). bench/full.ts runs it beside `stock-sync snapshot --out` as its "bare Node" row.
// argv: database URL, COPY statement, output file.
import { createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import pg from "pg";
import { to as copyTo } from "pg-copy-streams";

const [url, sql, file] = process.argv.slice(2);
const client = new pg.Client({ connectionString: url });
await client.connect();
await pipeline(client.query(copyTo(sql)), createWriteStream(file));
await client.end();
