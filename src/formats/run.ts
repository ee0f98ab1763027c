import type { Subscription } from "../subscriptions/subscriptions.js";
import type { RunFields } from "./cut.ts";
import type { Row } from "./fields.ts";
import { type Formats, loadFormats } from "./registry.ts";
import { type Rendered, renderFor, type Store } from "./stock.ts";

/**
 * The export's side of per-subscription bodies: which stock subscriptions get their own
 * messages, and rendering a run for each of them. The export keeps reading and state; this
 * keeps formats.
 */
export type FormatDeps = {
  subscriptions: readonly Subscription[];
  stock: { format: { part_rows: number } };
  /** Loaded at start (maps read, SIGHUP re-reads them); else loaded on first use. */
  formats?: Formats;
};

const loaded = new WeakMap<readonly Subscription[], Promise<Formats>>();

export function formatsOf(deps: FormatDeps): Promise<Formats> {
  if (deps.formats) return Promise.resolve(deps.formats);
  let f = loaded.get(deps.subscriptions);
  if (!f) {
    f = loadFormats(deps.subscriptions, { partRows: deps.stock.format.part_rows });
    loaded.set(deps.subscriptions, f);
  }
  return f;
}

/** The subscriptions that take the shared CSV parts: all but those with their own bodies. */
export async function sharedSubscriptions(deps: FormatDeps): Promise<Subscription[]> {
  const { custom } = await formatsOf(deps);
  return custom.size ? deps.subscriptions.filter((s) => !custom.has(s.name)) : [...deps.subscriptions];
}

/**
 * Renders a run for every own-body subscription among `names` (those the subject reaches), or
 * only `only` (`--out --subscription`). `rows` is called once per subscription: a full re-reads
 * its files rather than holding its rows.
 */
export async function renderRun(
  deps: FormatDeps,
  names: readonly string[],
  run: RunFields,
  rows: () => AsyncIterable<Row[]>,
  store: Store,
): Promise<Rendered[]> {
  const formats = await formatsOf(deps);
  const out: Rendered[] = [];
  for (const name of names) {
    const format = formats.stock(name);
    if (format) out.push(await renderFor(format, run, rows(), store));
  }
  return out;
}
