import { createRequire } from "node:module";
import { Writable } from "node:stream";
import type cliProgress from "cli-progress";

/**
 * cli-progress, loaded when a bar is drawn (stderr is a terminal): a command run from cron, CI
 * or a script never draws one and skips its load. require(), so startBar stays synchronous.
 */
let barModule: typeof cliProgress | undefined;
const loadBars = (): typeof cliProgress =>
  (barModule ??= createRequire(import.meta.url)("cli-progress") as typeof cliProgress);

/**
 * stderr for the logger while a progress bar may be drawn there: a log line first clears the
 * bar's line, so it never lands after the bar's text (the bar redraws below at its next update).
 * isTTY is stderr's, so the logger still picks pretty output on a terminal.
 */
export class LinesBesideBar extends Writable {
  readonly isTTY: boolean;
  #bar: cliProgress.SingleBar | null = null;

  constructor(private readonly out: NodeJS.WritableStream) {
    super();
    this.isTTY = (out as { isTTY?: boolean }).isTTY === true;
  }

  /** A bar on `out` while this run lasts, or null when `out` is not a terminal. */
  startBar(format: string): cliProgress.SingleBar | null {
    if (!this.isTTY) return null;
    const bars = loadBars();
    this.#bar = new bars.SingleBar(
      { stream: this.out as NodeJS.WriteStream, format },
      bars.Presets.shades_classic,
    );
    this.#bar.start(0, 0);
    return this.#bar;
  }

  stopBar(): void {
    this.#bar?.stop();
    this.#bar = null;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    // Clear the bar's line; the bar turns line wrapping off while it runs: on for a long log line.
    this.out.write(this.#bar ? `\r\x1b[2K\x1b[?7h${chunk}\x1b[?7l` : chunk);
    done();
  }
}
