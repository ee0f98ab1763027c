/**
 * One file into the remote folder the way a polling importer needs it: written under a temporary
 * name it ignores, made durable, then renamed into place (and an optional marker after it).
 */
import { posix } from "node:path";
import type { SFTPWrapper } from "ssh2";
import { looksFull, sftpFault, sftpReply } from "./classify.js";
import type { SftpSession } from "./connection.js";
import type { SftpOptions } from "./options.js";
import { traced } from "./trace.js";

export type RemoteNames = { temp: string; final: string; marker: string | null };

/**
 * The names one message uses. The temporary name is the same at every attempt (no random part),
 * so a retry after a crash truncates and replaces the leftover of the attempt that died instead
 * of leaving it behind for good.
 * @example remoteNames("/in", "000001-full-part-0001-of-0001.csv", { temp_prefix: ".", temp_suffix: ".tmp", marker: ".done" })
 *   // { temp: "/in/.000001-….csv.tmp", final: "/in/000001-….csv", marker: "/in/000001-….csv.done" }
 */
export function remoteNames(
  dir: string,
  name: string,
  opts: Pick<SftpOptions, "temp_prefix" | "temp_suffix" | "marker">,
): RemoteNames {
  return {
    temp: posix.join(dir, `${opts.temp_prefix}${name}${opts.temp_suffix}`),
    final: posix.join(dir, name),
    marker: opts.marker ? posix.join(dir, `${name}${opts.marker}`) : null,
  };
}

// Writes in flight at once: enough to fill a fast link (64 × 32 KB, like OpenSSH's sftp client).
const WINDOW = 64;

/** Uploads `body` as `name` into `dir` (which `ensureDir` may create first). */
export async function uploadFile(
  session: SftpSession,
  dir: string,
  name: string,
  body: Buffer,
  opts: Pick<SftpOptions, "temp_prefix" | "temp_suffix" | "marker">,
): Promise<void> {
  const names = remoteNames(dir, name, opts);
  await writeTemp(session, dir, names, body);
  await publishTemp(session, names);
}

/**
 * The bytes under the temporary name, durable on the server's disk, the handle closed: all of an
 * upload but its publication (an importer ignores the name). Staging (issue 13) does only this.
 */
export async function writeTemp(
  session: SftpSession,
  dir: string,
  names: RemoteNames,
  body: Buffer,
): Promise<void> {
  const { sftp } = session;
  const handle = await traced("open", () =>
    call<Buffer>("open", (cb) => sftp.open(names.temp, "w", cb)),
  ).catch((err) => {
    throw missingDir(err, dir);
  });
  try {
    await traced("write", () => writeAll(sftp, handle, body)).catch(async (err) => {
      throw await asDiskFull(session, dir, err, body.length);
    });
  } catch (err) {
    await call("close", (cb) => sftp.close(handle, cb)).catch(() => undefined);
    throw err;
  }
  // The fsync is not for our own crash (a re-delivery truncates the same temporary name and
  // renames over the same final name) but for the server's: the rename is only sent once the
  // data is on its disk, because once we record the part delivered nobody sends it again, and a
  // server that lost power after a rename journaled before the data (ext4 does not flush a new
  // name's data on rename) would leave the importer a short or empty stock file: zero stock for
  // everything after it. The close goes out with it (one round trip, answered in order).
  const synced = session.fsync
    ? traced("fsync", () => call("fsync", (cb) => sftp.ext_openssh_fsync(handle, cb)), names.temp)
    : Promise.resolve();
  const closed = traced("close", () => call("close", (cb) => sftp.close(handle, cb)));
  await Promise.all([synced, closed.catch(() => undefined)]);
}

/** What an importer sees: the written temporary file renamed into place, then the marker. */
export async function publishTemp(session: SftpSession, names: RemoteNames): Promise<void> {
  const { sftp } = session;
  await traced("rename", () => renameOver(session, names.temp, names.final), names.final);
  if (names.marker) {
    const marker = await call<Buffer>("open", (cb) => sftp.open(names.marker!, "w", cb));
    await call("close", (cb) => sftp.close(marker, cb));
  }
}

/** Removes a temporary file nobody will publish (an abandoned staging); a missing one is fine. */
export async function removeTemp(session: SftpSession, names: RemoteNames): Promise<void> {
  await call("remove", (cb) => session.sftp.unlink(names.temp, cb)).catch((err) => {
    if ((err as { code?: unknown }).code !== 2) throw err;
  });
}

/** Creates `dir` and its missing parents (an existing one is fine). */
export async function ensureDir(sftp: SFTPWrapper, dir: string): Promise<void> {
  const parts = dir.split("/").filter(Boolean);
  for (let i = 1; i <= parts.length; i++) {
    const path = `/${parts.slice(0, i).join("/")}`;
    const exists = await call<unknown>("stat", (cb) => sftp.stat(path, cb)).then(
      () => true,
      () => false,
    );
    if (!exists) await call("mkdir", (cb) => sftp.mkdir(path, cb));
  }
}

/**
 * Pipelined writes: up to WINDOW requests outstanding, each as large as the server takes
 * (limits@openssh.com), so throughput is not one round trip per chunk.
 */
function writeAll(sftp: SFTPWrapper, handle: Buffer, body: Buffer): Promise<void> {
  const chunk = Math.max(1024, (sftp as unknown as { _maxWriteLen?: number })._maxWriteLen ?? 32768);
  return new Promise<void>((resolve, reject) => {
    let next = 0;
    let pending = 0;
    let failed = false;
    const pump = () => {
      while (!failed && pending < WINDOW && next < body.length) {
        const at = next;
        const len = Math.min(chunk, body.length - at);
        next += len;
        pending++;
        sftp.write(handle, body, at, len, at, (err) => {
          pending--;
          if (failed) return;
          if (err) {
            failed = true;
            reject(sftpReply(err, "write"));
          } else if (next >= body.length && pending === 0) resolve();
          else pump();
        });
      }
    };
    if (body.length === 0) resolve();
    else pump();
  });
}

/**
 * Publishes the file under its final name, replacing a copy an earlier attempt already published.
 * posix-rename is atomic; plain SFTP rename refuses an existing target, so without the extension
 * the old copy is removed first (a poller may then briefly see neither; never a partial file).
 */
async function renameOver(session: SftpSession, from: string, to: string): Promise<void> {
  const { sftp } = session;
  if (session.posixRename) return call("rename", (cb) => sftp.ext_openssh_rename(from, to, cb));
  try {
    await call("rename", (cb) => sftp.rename(from, to, cb));
  } catch (err) {
    const exists = await call<unknown>("stat", (cb) => sftp.stat(to, cb)).then(
      () => true,
      () => false,
    );
    if (!exists) throw err;
    await call("remove", (cb) => sftp.unlink(to, cb));
    await call("rename", (cb) => sftp.rename(from, to, cb));
  }
}

function missingDir(err: Error, dir: string): Error {
  return (err as { code?: unknown }).code === 2
    ? sftpFault("no_such_directory", `remote directory ${dir} does not exist`, err)
    : err;
}

/** A bare "Failure" while writing is a full disk when statvfs says the space is gone. */
async function asDiskFull(session: SftpSession, dir: string, err: Error, size: number): Promise<Error> {
  if (!session.statvfs) return err;
  // ssh2 names the fields as statvfs(3) does (f_bavail), as numbers or bigints
  const fs = await call<{ f_bavail: number | bigint; f_frsize: number | bigint }>("statvfs", (cb) =>
    session.sftp.ext_openssh_statvfs(dir, cb),
  ).then(
    (v) => ({ bavail: Number(v.f_bavail), frsize: Number(v.f_frsize) }),
    () => null,
  );
  return looksFull(fs, size) ? sftpFault("disk_full", `no space left on the server in ${dir}`, err) : err;
}

/** An ssh2 callback call as a promise; a failure is marked as the reply to `op`. */
function call<T = void>(
  op: string,
  fn: (cb: (err: Error | undefined | null, v?: T) => void) => void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    fn((err, v) => (err ? reject(sftpReply(err, op)) : resolve(v as T)));
  });
}
