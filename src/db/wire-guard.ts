/**
 * What clients of the embedded database may not ask it to do. PGlite runs every statement as a
 * superuser, so a wire client could otherwise reach the server's files and programs:
 * `COPY … TO PROGRAM` even wedges PGlite's thread for good (it has no process to spawn). The
 * socket's permissions are the boundary (only this OS user can connect); this is a tripwire
 * behind it, for a statement that should never come from the connector's own SQL. Pure.
 */

const QUERY = 0x51; // 'Q': simple query, one string
const PARSE = 0x50; // 'P': extended protocol, statement name then the query string

// Comments could hide a keyword from a plain search: "copy t to/**/program".
const COMMENTS = /\/\*[\s\S]*?\*\/|--[^\n]*/g;

const RULES: [RegExp, string][] = [
  [/\bcopy\b[\s\S]*\bprogram\b/, "COPY … PROGRAM"],
  // COPY to or from a server file: a quoted path after TO/FROM (STDIN/STDOUT are not quoted).
  [/\bcopy\b[\s\S]*\b(?:to|from)\s+(?:e\s*)?'/, "COPY to or from a server file"],
  [
    /\b(?:pg_read_file|pg_read_binary_file|pg_ls_\w+|pg_stat_file|lo_import|lo_export|pg_file_write|pg_logdir_ls)\b/,
    "server file access",
  ],
  // U&"…" spells identifiers and strings by code point, past every rule above.
  [/\bu&\s*["']/, 'Unicode-escaped names (U&"…")'],
];

/** Why a client's statement is refused, or null when it may run. */
export function refusedStatement(sql: string): string | null {
  const text = sql.replace(COMMENTS, " ").toLowerCase();
  for (const [rule, what] of RULES) if (rule.test(text)) return `${what} is refused on the embedded database`;
  return null;
}

/** The SQL text of a Query or Parse message, or undefined for any other message. */
export function statementText(message: Uint8Array): string | undefined {
  const type = message[0];
  if (type !== QUERY && type !== PARSE) return undefined;
  const buf = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  let at = 5;
  if (type === PARSE) at = buf.indexOf(0, at) + 1; // skip the statement name
  const end = buf.indexOf(0, at);
  return at > 0 && end >= at ? buf.toString("utf8", at, end) : undefined;
}

/**
 * The same message with its SQL replaced by a statement that fails with `reason`: the client gets
 * an ordinary error and its protocol state stays as PostgreSQL would leave it.
 */
export function rewriteQuery(message: Uint8Array, reason: string): Uint8Array {
  const buf = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  const type = message[0]!;
  const start = type === PARSE ? buf.indexOf(0, 5) + 1 : 5;
  const end = buf.indexOf(0, start);
  const quoted = reason.replaceAll("'", "''");
  const sql = Buffer.from(
    `do $refused$ begin raise exception '${quoted}' using errcode = '42501'; end $refused$`,
  );
  const body = Buffer.concat([buf.subarray(5, start), sql, buf.subarray(end)]);
  const head = Buffer.alloc(5);
  head[0] = type;
  head.writeInt32BE(body.length + 4, 1);
  return new Uint8Array(Buffer.concat([head, body]));
}
