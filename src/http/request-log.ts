import type { FastifyBaseLogger } from "fastify";
import type { Bindings, ChildLoggerOptions, LevelWithSilentOrString } from "pino";

/**
 * fastify's logger for one request (`request.log`, bound to its `reqId`), made only when a line
 * is logged. fastify makes one for every request and we log per request only on failures: a pino
 * child (bindings serialized, redaction set up) behind the outage gate's proxy cost more of an
 * inbound webhook's CPU than its HMAC (#16). A line logged is the child's, exactly as before.
 * Passed as fastify's `childLoggerFactory`.
 */
export function lazyRequestLogger(
  logger: FastifyBaseLogger,
  bindings: Bindings,
  opts: ChildLoggerOptions,
): FastifyBaseLogger {
  return new LazyChild(logger, bindings, opts);
}

class LazyChild implements FastifyBaseLogger {
  #made: FastifyBaseLogger | undefined;

  constructor(
    private readonly parent: FastifyBaseLogger,
    private readonly bindings: Bindings,
    private readonly opts: ChildLoggerOptions,
  ) {}

  get #log(): FastifyBaseLogger {
    this.#made ??= this.parent.child(this.bindings, this.opts);
    return this.#made;
  }

  get level(): LevelWithSilentOrString {
    return this.#made?.level ?? this.opts.level ?? this.parent.level;
  }

  set level(level: LevelWithSilentOrString) {
    this.#log.level = level;
  }

  fatal(obj: unknown, ...rest: unknown[]): void {
    line(this.#log, "fatal", obj, rest);
  }
  error(obj: unknown, ...rest: unknown[]): void {
    line(this.#log, "error", obj, rest);
  }
  warn(obj: unknown, ...rest: unknown[]): void {
    line(this.#log, "warn", obj, rest);
  }
  info(obj: unknown, ...rest: unknown[]): void {
    line(this.#log, "info", obj, rest);
  }
  debug(obj: unknown, ...rest: unknown[]): void {
    line(this.#log, "debug", obj, rest);
  }
  trace(obj: unknown, ...rest: unknown[]): void {
    line(this.#log, "trace", obj, rest);
  }
  silent(obj: unknown, ...rest: unknown[]): void {
    line(this.#log, "silent", obj, rest);
  }

  child(bindings: Bindings, options?: ChildLoggerOptions): FastifyBaseLogger {
    return this.#log.child(bindings, options);
  }
}

type Level = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/** One line through `log`, with the arguments as given (pino's overloads take them all). */
function line(log: FastifyBaseLogger, level: Level, obj: unknown, rest: unknown[]): void {
  (log[level] as (...args: unknown[]) => void).call(log, obj, ...rest);
}
