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
import { ensureDir, uploadFile } from "./upload.js";

export type SftpMessage = {
  url: string;
  fileName: string;
  body: Buffer;
  timeoutMs: number;
  signal?: AbortSignal;
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
  async send(msg: SftpMessage): Promise<AttemptResult> {
    const deadline = AbortSignal.timeout(msg.timeoutMs);
    const stop = msg.signal ? AbortSignal.any([msg.signal, deadline]) : deadline;
    try {
      await this.#slot(stop);
      try {
        await traced("send", () => abortable(this.#deliver(msg, stop), stop, () => this.#drop()));
      } finally {
        this.#release();
      }
      return { kind: "response", status: 200 };
    } catch (err) {
      const e = stop.aborted && err === stop.reason ? abortError(msg, deadline.aborted) : err;
      const { errorClass, message } = classifySftpError(e);
      return { kind: "error", errorClass, message };
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

  close(): void {
    this.#drop();
  }

  /**
   * Upload on the current connection; a reused connection that turns out dead (the server closed
   * it while idle) gets one more try on a fresh one within the same attempt.
   */
  async #deliver(msg: SftpMessage, stop: AbortSignal): Promise<void> {
    const reused = this.#session !== null;
    try {
      await this.#upload(msg, stop);
    } catch (err) {
      if (!reused || isStatusReply(err) || stop.aborted) throw err;
      this.#drop();
      await this.#upload(msg, stop);
    }
  }

  async #upload(msg: SftpMessage, stop: AbortSignal): Promise<void> {
    const session = await traced("connect", () => this.#connect(msg.timeoutMs));
    stop.throwIfAborted();
    try {
      if (this.opts.mkdir && !this.#dirReady) {
        await ensureDir(session.sftp, this.#target.dir);
        this.#dirReady = true;
      }
      await uploadFile(session, this.#target.dir, msg.fileName, msg.body, this.opts);
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
