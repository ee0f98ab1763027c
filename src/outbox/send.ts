import { randomBytes } from "node:crypto";
import { EventEmitter } from "node:events";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { Agent, type Dispatcher, request } from "undici";
import type { Mailer } from "../notifications/mail.js";
import type { SftpSender, SftpTarget } from "../sftp/sender.js";
import { type AttemptResult, classifyError } from "./retry.js";

export type OutboundRequest = {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: Buffer;
  timeoutMs: number;
  /** The name a file:// destination gives this message (lexical order = delivery order). */
  fileName: string;
  /** Aborts the request (the engine stopping): the result is then an error. */
  signal?: AbortSignal;
  /** sftp:// subscriptions: the credentials and limits of the subscription's connection. */
  sftp?: SftpTarget;
  /** Bytes of the reply to read (default RESPONSE_BODY_CAP): an import job's poll reads more. */
  responseCap?: number;
};

export type SendResult = { result: AttemptResult; responseBody: string | null; durationMs: number };

/**
 * A message whose bytes went to the destination ahead of its turn without becoming visible there
 * (sftp://: under the temporary name importers ignore). fifo stages the message behind the one it
 * sends (issue 13); the staged message's own attempt is `publish`.
 */
export type Staged = {
  /** The attempt of `req` (the same message): made visible, or uploaded whole if the staging failed. */
  publish(req: OutboundRequest): Promise<SendResult>;
  /** Not to be published: waits for the staging to end, then removes what it left if `remove`. */
  abandon(remove: boolean): Promise<void>;
};

export type Sender = {
  send(req: OutboundRequest): Promise<SendResult>;
  /** Where the destination can stage (sftp://): starts uploading `req` without publishing it. */
  stage?(req: OutboundRequest): Promise<Staged | null>;
  /**
   * Where the destination keeps a connection (sftp://), opens it now, ahead of the first message;
   * a failure is left to that message's attempt.
   */
  warm?(req: Pick<OutboundRequest, "url" | "sftp" | "timeoutMs">): Promise<void>;
  close(): Promise<void>;
};

/** Response bodies are kept for the attempt log only: the first 4 KB. */
export const RESPONSE_BODY_CAP = 4096;

export type SenderOptions = { smtp: { url: string; from: string }; cwd?: string };

/** One sender for every scheme: http(s) through a pooled undici agent, file://, sftp:// and mailto:. */
export function createSender(opts: SenderOptions): Sender {
  // One agent keeps a connection pool per origin; redirects are never followed (no interceptor).
  const agent = new Agent({ connect: { timeout: 10_000 }, keepAliveTimeout: 30_000, connections: 64 });
  // nodemailer is loaded on the first mail, not by every process that sends webhooks.
  const mailer = loadOnce<Mailer>(async () =>
    (await import("../notifications/mail.js")).createMailer(opts.smtp.url, opts.smtp.from),
  );
  // likewise ssh2, on the first sftp:// message; it keeps one connection per subscription
  const sftp = loadOnce<SftpSender>(async () => new (await import("../sftp/sender.js")).SftpSender());
  const cwd = opts.cwd ?? process.cwd();

  async function dispatch(req: OutboundRequest): Promise<Omit<SendResult, "durationMs">> {
    if (req.url.startsWith("file://")) {
      await writeAtomically(filePath(req.url, cwd), req.fileName, req.body);
      return { result: { kind: "response", status: 200 }, responseBody: null };
    }
    if (req.sftp) {
      return { result: await (await sftp.get()).send(req.sftp, req), responseBody: null };
    }
    if (req.url.startsWith("mailto:")) {
      if (!opts.smtp.url)
        throw Object.assign(new Error("notifications.smtp.url is not set"), { code: "NO_SMTP" });
      const { title, text } = JSON.parse(req.body.toString("utf8")) as { title: string; text: string };
      await (await mailer.get()).send(req.url.slice("mailto:".length), title, text);
      return { result: { kind: "response", status: 250 }, responseBody: null };
    }
    return sendHttp(agent, req);
  }

  /** `work` timed, a throw turned into the attempt's error. */
  async function timed(req: OutboundRequest, work: () => Promise<Omit<SendResult, "durationMs">>) {
    const started = performance.now();
    try {
      const out = await work();
      return { ...out, durationMs: performance.now() - started };
    } catch (err) {
      const scheme = req.url.startsWith("file://") ? "file" : req.url.startsWith("mailto:") ? "mail" : null;
      const classified = classifyError(err);
      const errorClass = scheme && classified.errorClass === "other" ? scheme : classified.errorClass;
      return {
        result: { kind: "error" as const, errorClass, message: classified.message },
        responseBody: null,
        durationMs: performance.now() - started,
      };
    }
  }

  return {
    send: (req) => timed(req, () => dispatch(req)),
    async stage(req) {
      if (!req.sftp) return null;
      const staged = (await sftp.get()).stage(req.sftp, req);
      return {
        publish: (r) => timed(r, async () => ({ result: await staged.publish(r), responseBody: null })),
        abandon: (remove) => staged.abandon(remove),
      };
    },
    async warm(req) {
      if (!req.sftp) return;
      (await sftp.get()).warm(req.sftp, req.url, req.timeoutMs);
    },
    async close() {
      (await mailer.loaded())?.close();
      (await sftp.loaded())?.close();
      await agent.close();
    },
  };
}

/**
 * `load`, run once on first use: callers that come while it loads share it. Each loading its own
 * (the first message and the early SFTP connection ask in the same tick) would leave one with
 * connections that close() never ends, and a process that cannot exit.
 */
function loadOnce<T>(load: () => Promise<T>) {
  let loading: Promise<T> | null = null;
  return {
    get: () => (loading ??= load()),
    /** What was loaded, once it has, or null if it never was (or failed). */
    loaded: async () => (loading ? await loading.catch(() => null) : null),
  };
}

async function sendHttp(agent: Agent, req: OutboundRequest): Promise<Omit<SendResult, "durationMs">> {
  const { signal, done } = requestSignal(req.signal, req.timeoutMs);
  try {
    const res = await request(req.url, {
      dispatcher: agent,
      method: req.method as "POST",
      headers: req.headers,
      body: req.method === "GET" ? undefined : req.body,
      signal,
      headersTimeout: req.timeoutMs,
      bodyTimeout: req.timeoutMs,
    });
    const responseBody = await readReply(res, req.responseCap ?? RESPONSE_BODY_CAP);
    const retryAfter = res.headers["retry-after"];
    return {
      result: {
        kind: "response",
        status: res.statusCode,
        retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter,
      },
      responseBody,
    };
  } finally {
    done();
  }
}

/**
 * What undici accepts as a request's signal besides an AbortSignal: an emitter of `abort` with
 * `aborted` and `reason`. An AbortController per request (and undici's listener on its
 * EventTarget) was the largest item the engine's process spent per message beyond the floor's
 * (#16, a profile of 20,000 messages: createAbortSignal and the EventTarget listener calls ~1.2%
 * of all samples); an EventEmitter costs a fraction of it. undici rejects the request with
 * `reason` when it is set (lib/api/abort-signal.js), so a timeout is still a TimeoutError.
 */
class RequestAbort extends EventEmitter {
  aborted = false;
  reason: unknown = undefined;

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.emit("abort");
  }
}

/**
 * One signal that aborts the request when the caller's does or `timeoutMs` has passed (with the
 * TimeoutError AbortSignal.timeout gives), and `done()` to drop its timer. What AbortSignal.any
 * and AbortSignal.timeout do, at a fraction of their cost: on Node 20 the two took ~3% of the
 * sender's CPU and fed the garbage collector (a profile at 3,000 requests/s). The caller's
 * signal is one per worker (aborted when it stops): it gets one listener, which aborts the
 * requests registered under it, instead of an add and a remove per request (#16: EventTarget's
 * listener bookkeeping was ~4% of a profile).
 */
function requestSignal(outer: AbortSignal | undefined, timeoutMs: number) {
  const controller = new RequestAbort();
  const timer = setTimeout(
    () => controller.abort(new DOMException("The operation was aborted due to timeout", "TimeoutError")),
    timeoutMs,
  );
  const live = outer ? following(outer) : null;
  if (outer?.aborted) controller.abort(outer.reason);
  else live?.add(controller);
  return {
    signal: controller,
    done() {
      clearTimeout(timer);
      live?.delete(controller);
    },
  };
}

/** The requests in flight under each caller's signal, aborted together when it is. */
const followers = new WeakMap<AbortSignal, Set<RequestAbort>>();

function following(outer: AbortSignal): Set<RequestAbort> {
  let live = followers.get(outer);
  if (!live) {
    const set = new Set<RequestAbort>();
    live = set;
    followers.set(outer, set);
    outer.addEventListener(
      "abort",
      () => {
        for (const c of set) c.abort(outer.reason);
        set.clear();
      },
      { once: true },
    );
  }
  return live;
}

/**
 * The reply, at most `cap` bytes. A reply that says it is empty or small enough (204, or a
 * Content-Length within the cap) is read whole, without the async iterator readCapped needs
 * (#16: the iterator and its end-of-stream watcher were ~2% of the sender's CPU per request).
 */
async function readReply(res: Dispatcher.ResponseData, cap: number): Promise<string> {
  const length = res.statusCode === 204 ? "0" : res.headers["content-length"];
  if (typeof length === "string" && /^\d+$/.test(length) && Number(length) <= cap) return res.body.text();
  return readCapped(res.body, cap);
}

/** Reads at most `cap` bytes; a larger body is cut off (the connection is then not reused). */
async function readCapped(body: AsyncIterable<Buffer> & { destroy(): void }, cap: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= cap) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, cap).toString("utf8");
}

/** `file://./out/stock` is relative to the working directory; `file:///var/out` is absolute. */
export function filePath(url: string, cwd: string): string {
  return resolve(cwd, decodeURIComponent(url.slice("file://".length)));
}

// 255 bytes is the usual file name limit; the temp name adds a dot and ~13 bytes to it.
const MAX_NAME_BYTES = 200;

/**
 * The file a message becomes: directly inside the drop folder, never a dotfile, never longer
 * than a file system takes (an ENAMETOOLONG would retry until the subscription is deactivated).
 */
export function dropTarget(dir: string, name: string): string {
  const folder = resolve(dir);
  const target = resolve(folder, name);
  if (
    basename(name) !== name ||
    name.startsWith(".") ||
    Buffer.byteLength(name) > MAX_NAME_BYTES ||
    dirname(target) !== folder
  ) {
    throw Object.assign(new Error(`unsafe file name for ${folder}: ${JSON.stringify(name.slice(0, 80))}`), {
      code: "EUNSAFE_NAME",
    });
  }
  return target;
}

/** Temp file, fsync, rename: a reader of the folder sees the whole file or none of it. */
async function writeAtomically(dir: string, name: string, body: Buffer): Promise<void> {
  const target = dropTarget(dir, name);
  await mkdir(dir, { recursive: true });
  const tmp = join(dirname(target), `.${name}.${randomBytes(4).toString("hex")}.tmp`);
  const handle = await open(tmp, "w");
  try {
    await handle.writeFile(body);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}
