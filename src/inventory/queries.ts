import { trimQuery } from "./params.js";

/**
 * The shipped source queries for the reference schema (fixtures/inventory/schema.sql). Users with
 * their own schema replace them in config (`stock.queries.*`); each must keep the same columns and
 * parameters. Sellable = max(on hand − open reservations − safety buffer, 0) + incoming expected
 * within $1 days; only active items at active locations (a key that drops out is sent as 0 by the
 * diff against what was sent).
 *
 * Choices: keys are every (sku, location) with a stock row or incoming stock in the window (a
 * reservation or buffer alone makes no key). The floor at 0 applies before incoming is added, so
 * an oversold on-hand or a large buffer never eats stock that is on its way. A reservation counts
 * while open and not expired at the transaction's now() (one instant in a snapshot); its expiry
 * changes the value with no write, as does incoming stock entering the window: both are found by
 * DEFAULT_TIME_CANDIDATES. Overdue incoming rows still count until received or cancelled.
 * test/integration/seed.test.ts recomputes the formula in JavaScript to check this SQL.
 */

const SELLABLE_BODY = (keyFilter: string) => `
with cand as (${keyFilter}),
reserved as (
  select r.sku, r.location, sum(r.quantity) as quantity
  from inventory.reservations r join cand using (sku, location)
  where r.status = 'open' and (r.expires_at is null or r.expires_at > now())
  group by r.sku, r.location
),
incoming as (
  select i.sku, i.location, sum(i.quantity) as quantity
  from inventory.incoming_stock i join cand using (sku, location)
  where i.status = 'expected' and i.expected_on <= current_date + $1::int
  group by i.sku, i.location
),
keys as (
  select oh.sku, oh.location from inventory.stock_on_hand oh join cand using (sku, location)
  union
  select sku, location from incoming
)
select k.sku, k.location,
  (greatest(coalesce(oh.quantity, 0) - coalesce(r.quantity, 0) - coalesce(ss.quantity, 0), 0)
    + coalesce(i.quantity, 0))::integer as quantity
from keys k
join inventory.items it on it.sku = k.sku and it.active
join inventory.locations l on l.code = k.location and l.active
left join inventory.stock_on_hand oh on oh.sku = k.sku and oh.location = k.location
left join reserved r on r.sku = k.sku and r.location = k.location
left join inventory.safety_stock ss on ss.sku = k.sku and ss.location = k.location
left join incoming i on i.sku = k.sku and i.location = k.location`;

/** Every key: $1 include_future_days. Columns sku, location, quantity (plus any extra for the CSV). */
export const DEFAULT_SELLABLE = SELLABLE_BODY(
  "select sku, location from inventory.stock_on_hand union select sku, location from inventory.incoming_stock",
);

/** The same for the given keys only: $1 days, $2 skus text[], $3 locations text[] (pairs). */
export const DEFAULT_SELLABLE_KEYS = SELLABLE_BODY(
  "select * from unnest($2::text[], $3::text[]) as c(sku, location)",
);

/**
 * The same for whole items ($2 skus text[]) or whole locations ($3 locations text[]): an item or
 * location row changed. Through the sku and location indexes, not the whole stock (1.45 s at
 * 200k keys against under a millisecond for exact keys).
 */
export const DEFAULT_SELLABLE_MATCHING = SELLABLE_BODY(
  `select sku, location from inventory.stock_on_hand where sku = any($2::text[]) or location = any($3::text[])
   union
   select sku, location from inventory.incoming_stock where sku = any($2::text[]) or location = any($3::text[])`,
);

/** Any sellable query restricted to whole items or locations: correct for any schema, but runs it all. */
const filtered = (sellable: string) =>
  `select * from (${sellable}\n) s where s.sku = any($2::text[]) or s.location = any($3::text[])`;

/**
 * Keys whose sellable value can change with no write, because time passed between the previous
 * read ($1) and this one ($2): a reservation expiring, incoming stock entering the $3-day window.
 */
export const DEFAULT_TIME_CANDIDATES = `
select sku, location from inventory.reservations
where status = 'open' and expires_at > $1::timestamptz and expires_at <= $2::timestamptz
union
select sku, location from inventory.incoming_stock
where status = 'expected'
  and expected_on > ($1::timestamptz)::date + $3::int and expected_on <= ($2::timestamptz)::date + $3::int`;

export type CaptureTable = { table: string; sku?: string | undefined; location?: string | undefined };

/** Every table sellable stock depends on, and which key columns identify what a row affects. */
export const DEFAULT_CAPTURE_TABLES: CaptureTable[] = [
  { table: "inventory.stock_on_hand", sku: "sku", location: "location" },
  { table: "inventory.reservations", sku: "sku", location: "location" },
  { table: "inventory.safety_stock", sku: "sku", location: "location" },
  { table: "inventory.incoming_stock", sku: "sku", location: "location" },
  { table: "inventory.items", sku: "sku" },
  { table: "inventory.locations", location: "code" },
];

/** The queries' names in the config, as errors and checks name them. */
export const SELLABLE = "stock.queries.sellable";
export const SELLABLE_KEYS = "stock.queries.sellable_keys";
export const SELLABLE_MATCHING = "stock.queries.sellable_matching";

export type SourceQueries = {
  sellable: string;
  sellableKeys: string;
  sellableMatching: string;
  timeCandidates: string | null;
};

/** The queries to run: the configured ones (a trailing `;` removed, as they get wrapped) or the shipped ones. */
export function sourceQueries(q: {
  sellable: string;
  sellable_keys: string;
  time_candidates: string;
  sellable_matching?: string;
}): SourceQueries {
  const sellable = trimQuery(q.sellable);
  const time = trimQuery(q.time_candidates);
  return {
    sellable: sellable || DEFAULT_SELLABLE,
    sellableKeys: trimQuery(q.sellable_keys) || DEFAULT_SELLABLE_KEYS,
    sellableMatching:
      trimQuery(q.sellable_matching ?? "") || (sellable ? filtered(sellable) : DEFAULT_SELLABLE_MATCHING),
    // "none" switches time-based candidates off for schemas without time-dependent inputs.
    timeCandidates: time === "none" ? null : time || DEFAULT_TIME_CANDIDATES,
  };
}
