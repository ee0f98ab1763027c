/**
 * An sftp:// subscription's destination: one SSH connection, opened at the first message, reused
 * for the next ones and opened again after it failed; at most `concurrency` uploads on it at once;
 * `timeout` bounds the connection and the upload together (issue 13).
 */
import type { AttemptResult } from "../outbox/retry.js";
import { classifySftpError, isStatusReply, sftpFault } from "./classify.js";
import { openSession, type SftpSession } from "./connection.js";
import { parseSftpUrl, type SftpOptions, type SftpUrl } from "./options.js";
import { traced } from "./trace.js";
import { ensureDir, publishTemp, removeTemp, remoteNames, uploadFile, writeTemp } from "./upload.js";

type Op = (session: SftpSession) => Promise<void>;

export type SftpMessage = {
  url: string;
  fileName: string;
  body: Buffer;
  timeoutMs: number;
  signal?: AbortSignal;
};

/**
 * A message uploaded ahead of its turn (fifo, issue 13): its bytes are under the temporary name,
 * which importers ignore, and nothing is visible until `publish`.
 */
export type StagedFile = {
  /**
   * `msg`'s attempt: the rename into place (and the marker). A staging that failed, or that holds
   * other bytes than `msg`'s, is not used: `msg` is then uploaded whole, as by `send`.
   */
  publish(msg: SftpMessage): Promise<AttemptResult>;
  /**
   * Nobody will publish it: waits until its upload has ended (it is bounded by the message's
   * timeout and signal) and, if `remove`, deletes the temporary file (best effort).
   */
  abandon(remove: boolean): Promise<void>;
};

export class SftpDestination {
  readonly #target: SftpUrl;
  #session: Promise<SftpSession> | null = null;
  #dirReady = false;
  #active = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(
    url: string,
    private readonly opts: SftpOptions,
    private readonly concurrency: number,
  ) {
    const target = parseSftpUrl(url);
    if (!target) throw new Error(`not an sftp://user@host/dir URL: ${url}`);
    this.#target = target;
  }

  /** One attempt: the file is in place (delivered), or the error's class and text. */
  send(msg: SftpMessage): Promise<AttemptResult> {
    return this.#attempt(msg, "send", (session) =>
      uploadFile(session, this.#target.dir, msg.fileName, msg.body, this.opts),
    );
  }

  /**
   * Starts uploading `msg` under its temporary name (the same one `send` uses, so a re-delivery
   * after a crash overwrites what a staging left) and returns at once. It takes one of the
   * `concurrency` places while it uploads; `publish` takes one for its rename.
   */
  stage(msg: SftpMessage): StagedFile {
    const names = remoteNames(this.#target.dir, msg.fileName, this.opts);
    const upload = this.#run(msg, "stage", (session) =>
      writeTemp(session, this.#target.dir, names, msg.body),
    );
    upload.catch(() => undefined);
    return {
      publish: async (m) => {
        // The attempt's timeout covers the wait for the staging too: the worker checked that its
        // lease outlasts one timeout from now, and no rename may go out after that.
        const started = performance.now();
        const { deadline, stop } = attemptStop(m);
        let staged: boolean;
        try {
          staged = await traced("wait", () =>
            abortable(
              upload.then(
                () => true,
                () => false,
              ),
              stop,
              // as a send's timeout: the connection goes, and the staging's writes with it
              () => this.#drop(),
            ),
          );
        } catch (err) {
          const { errorClass, message } = classifySftpError(
            err === stop.reason ? abortError(m, deadline.aborted) : err,
          );
          return { kind: "error", errorClass, message };
        }
        const rest = {
          ...m,
          timeoutMs: Math.max(1, Math.floor(m.timeoutMs - (performance.now() - started))),
        };
        if (!staged || m.fileName !== msg.fileName || !m.body.equals(msg.body)) return this.send(rest);
        return this.#attempt(rest, "send", (session) => publishTemp(session, names));
      },
      abandon: async (remove) => {
        await upload.catch(() => undefined);
        if (!remove) return;
        const stop = AbortSignal.timeout(msg.timeoutMs);
        const removal = this.#connect(msg.timeoutMs).then((session) => removeTemp(session, names));
        await abortable(removal, stop, () => this.#drop()).catch(() => undefined);
      },
    };
  }

  close(): void {
    this.#drop();
  }

  /** `op` as one attempt: classified, never thrown. */
  async #attempt(msg: SftpMessage, phase: string, op: Op): Promise<AttemptResult> {
    try {
      await this.#run(msg, phase, op);
      return { kind: "response", status: 200 };
    } catch (err) {
      const { errorClass, message } = classifySftpError(err);
      return { kind: "error", errorClass, message };
    }
  }

  /** `op` in a place among the uploads, within the message's timeout; a timeout or abort is named. */
  async #run(msg: SftpMessage, phase: string, op: Op): Promise<void> {
    const { deadline, stop } = attemptStop(msg);
    try {
      await this.#slot(stop);
      try {
        await traced(
          phase,
          () => abortable(this.#deliver(msg, stop, op), stop, () => this.#drop()),
          msg.fileName,
        );
      } finally {
        this.#release();
      }
    } catch (err) {
      throw stop.aborted && err === stop.reason ? abortError(msg, deadline.aborted) : err;
    }
  }

  /**
   * Connects now, ahead of the first message (the engine has just taken the subscription): the
   * handshake, and loading ssh2, then overlap the backlog's first read instead of delaying the
   * first upload. A failure is dropped here; the first attempt connects again and records it.
   */
  warm(timeoutMs: number): void {
    this.#connect(timeoutMs).catch(() => undefined);
  }

  /**
   * `op` on the current connection; a reused connection that turns out dead (the server closed
   * it while idle) gets one more try on a fresh one within the same attempt.
   */
  async #deliver(msg: SftpMessage, stop: AbortSignal, op: Op): Promise<void> {
    const reused = this.#session !== null;
    try {
      await this.#upload(msg, stop, op);
    } catch (err) {
      if (!reused || isStatusReply(err) || stop.aborted) throw err;
      this.#drop();
      await this.#upload(msg, stop, op);
    }
  }

  async #upload(msg: SftpMessage, stop: AbortSignal, op: Op): Promise<void> {
    const session = await traced("connect", () => this.#connect(msg.timeoutMs));
    stop.throwIfAborted();
    try {
      if (this.opts.mkdir && !this.#dirReady) {
        await ensureDir(session.sftp, this.#target.dir);
        this.#dirReady = true;
      }
      await op(session);
    } catch (err) {
      // a reply (no such folder, denied) leaves the connection usable; anything else may not
      if (!isStatusReply(err) || !session.alive()) this.#drop();
      throw err;
    }
  }

  #connect(timeoutMs: number): Promise<SftpSession> {
    const current = this.#session;
    if (current) {
      return current.then((s) => {
        if (s.alive()) return s;
        if (this.#session === current) this.#drop();
        return this.#connect(timeoutMs);
      });
    }
    const opening = openSession(this.#target, this.opts, timeoutMs);
    this.#session = opening;
    // a failed connection is forgotten, so the next attempt connects again
    opening.catch(() => {
      if (this.#session === opening) this.#session = null;
    });
    return opening;
  }

  #drop(): void {
    const s = this.#session;
    this.#session = null;
    this.#dirReady = false;
    s?.then((session) => session.close()).catch(() => undefined);
  }

  /** A place among the `concurrency` uploads; a freed place passes straight to the next waiter. */
  async #slot(stop: AbortSignal): Promise<void> {
    if (this.#active < this.concurrency) {
      this.#active++;
      return;
    }
    let wake = () => {};
    const turn = new Promise<void>((r) => {
      wake = r;
    });
    this.#waiting.push(wake);
    try {
      await abortable(turn, stop, () => undefined);
    } catch (err) {
      const i = this.#waiting.indexOf(wake);
      if (i >= 0) this.#waiting.splice(i, 1);
      else this.#release(); // woken as it gave up: the place it was handed goes on
      throw err;
    }
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#active--;
  }
}

/** An attempt's bound: its timeout (`deadline`), and that or the caller's signal (`stop`). */
function attemptStop(msg: SftpMessage): { deadline: AbortSignal; stop: AbortSignal } {
  const deadline = AbortSignal.timeout(msg.timeoutMs);
  return { deadline, stop: msg.signal ? AbortSignal.any([msg.signal, deadline]) : deadline };
}

/** `work`, or the abort's reason as soon as `stop` fires (then `onAbort` cleans up behind it). */
function abortable<T>(work: Promise<T>, stop: AbortSignal, onAbort: () => void): Promise<T> {
  if (stop.aborted) return Promise.reject(stop.reason);
  return new Promise<T>((resolve, reject) => {
    const abort = () => {
      onAbort();
      reject(stop.reason);
    };
    stop.addEventListener("abort", abort, { once: true });
    work.then(resolve, reject).finally(() => stop.removeEventListener("abort", abort));
  });
}

function abortError(msg: SftpMessage, timedOut: boolean): Error {
  return timedOut
    ? sftpFault("timeout", `no connection and upload within ${msg.timeoutMs} ms`)
    : new Error("upload aborted: stock-sync is stopping");
}
