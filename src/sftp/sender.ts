/**
 * The sftp:// side of the outbox's sender: one destination (one SSH connection) per subscription,
 * made at its first message and closed with the sender.
 */
import type { AttemptResult } from "../outbox/retry.js";
import { SftpDestination, type SftpMessage, type StagedFile } from "./destination.js";
import type { SftpOptions } from "./options.js";

/** What a request to an sftp:// subscription carries besides the message (set by buildRequest). */
export type SftpTarget = { subscription: string; options: SftpOptions; concurrency: number };

export class SftpSender {
  readonly #destinations = new Map<string, SftpDestination>();

  send(target: SftpTarget, msg: SftpMessage): Promise<AttemptResult> {
    return this.#destination(target, msg.url).send(msg);
  }

  /** Uploads `msg` under its temporary name now, to be published later (see StagedFile). */
  stage(target: SftpTarget, msg: SftpMessage): StagedFile {
    return this.#destination(target, msg.url).stage(msg);
  }

  /** Opens the subscription's connection ahead of its first message (SftpDestination.warm). */
  warm(target: SftpTarget, url: string, timeoutMs: number): void {
    this.#destination(target, url).warm(timeoutMs);
  }

  #destination(target: SftpTarget, url: string): SftpDestination {
    let dest = this.#destinations.get(target.subscription);
    if (!dest) {
      dest = new SftpDestination(url, target.options, target.concurrency);
      this.#destinations.set(target.subscription, dest);
    }
    return dest;
  }

  close(): void {
    for (const dest of this.#destinations.values()) dest.close();
    this.#destinations.clear();
  }
}
