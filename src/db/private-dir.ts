import { mkdir, stat } from "node:fs/promises";
import { ConnectorError } from "../errors.js";

/**
 * Creates `dir` readable by this OS user only (0700), or checks that an existing one is, as
 * PostgreSQL does for its data directory: the embedded database's files, its socket and the
 * stock files in progress live there, and any other local user who can enter it can read or
 * rewrite the connector's state.
 */
export async function ensurePrivateDir(dir: string, setting: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await stat(dir);
  const problem = !st.isDirectory()
    ? "is not a directory"
    : process.getuid && st.uid !== process.getuid()
      ? `is owned by uid ${st.uid}, not by this user (uid ${process.getuid()})`
      : (st.mode & 0o077) !== 0
        ? `is accessible to other users (mode ${(st.mode & 0o777).toString(8)}); run: chmod 700 ${dir}`
        : null;
  if (problem) throw new ConnectorError("CONFIG_INVALID", `${setting}: ${dir} ${problem}`);
}
