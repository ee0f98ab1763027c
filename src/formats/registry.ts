import { ConnectorError } from "../errors.ts";
import type { BodyConfig, MapConfig } from "./config.ts";
import { placeholdersIn } from "./config.ts";
import { type CodeMaps, loadCodeMaps, MapFileError } from "./maps.ts";
import { compileBody, type StockBody } from "./render.ts";
import { compileTemplate, type Template } from "./template.ts";

type SubLike = {
  name: string;
  subjects: readonly string[];
  url: string;
  headers: Record<string, string>;
  internal?: boolean;
  body?: BodyConfig;
  map?: MapConfig;
};

/** A stock subscription with its own body: how to render and map it. */
export type StockFormat = { name: string; body: StockBody; maps: CodeMaps; placeholders: boolean };

/** Per subscription: its compiled body or event template and its loaded code maps; maps re-read on `reload`. */
export type Formats = {
  stock(name: string): StockFormat | undefined;
  event(name: string): Template | undefined;
  /** Names of the stock subscriptions that get their own messages (a body, a map or placeholders). */
  readonly custom: ReadonlySet<string>;
  /** Re-reads every map file (SIGHUP); on an error the maps in use stay. */
  reload(): Promise<void>;
};

const isStockOnly = (s: SubLike) => s.subjects.every((x) => x.startsWith("stock."));
const hasPlaceholders = (s: SubLike) =>
  placeholdersIn(s.url).length > 0 || Object.values(s.headers).some((v) => placeholdersIn(v).length > 0);

// A map without a body block sends the default CSV with the OMS's codes.
const DEFAULT_BODY: Omit<BodyConfig, "rows_per_message"> = {
  format: "csv",
  columns: ["sku", "location", "quantity"],
  header: true,
  delimiter: ",",
  template: null,
  max_bytes: null,
};

/**
 * Compiles every subscription's body (already validated) and reads its map files. An unreadable
 * or malformed map file is a config error naming the path (`subscriptions[2].map.location.file`):
 * `config check` exits 2 and `start` refuses to start.
 */
export async function loadFormats(
  subs: readonly SubLike[],
  opts: { partRows: number; cwd?: string },
): Promise<Formats> {
  const stock = new Map<string, StockFormat>();
  const events = new Map<string, Template>();
  const custom = subs.filter((s) => !s.internal && (s.body || s.map || hasPlaceholders(s)) && isStockOnly(s));
  const readMaps = async () => {
    const maps = new Map<string, CodeMaps>();
    for (const s of custom) maps.set(s.name, await mapsOf(s, subs.indexOf(s), opts.cwd));
    return maps;
  };
  const install = (maps: Map<string, CodeMaps>) => {
    for (const s of custom) {
      const body = compileBody(s.body ?? { ...DEFAULT_BODY, rows_per_message: null }, opts.partRows);
      stock.set(s.name, { name: s.name, body, maps: maps.get(s.name)!, placeholders: hasPlaceholders(s) });
    }
  };
  install(await readMaps());
  for (const s of subs)
    if (!s.internal && s.body?.template && !isStockOnly(s))
      events.set(s.name, compileTemplate(s.body.template));
  return {
    stock: (name) => stock.get(name),
    event: (name) => events.get(name),
    custom: new Set(custom.map((s) => s.name)),
    async reload() {
      install(await readMaps());
    },
  };
}

async function mapsOf(s: SubLike, index: number, cwd?: string): Promise<CodeMaps> {
  try {
    return await loadCodeMaps(s.map, cwd);
  } catch (err) {
    if (!(err instanceof MapFileError)) throw err;
    throw new ConnectorError("CONFIG_INVALID", `subscriptions[${index}].${err.path}: ${err.message}`);
  }
}
