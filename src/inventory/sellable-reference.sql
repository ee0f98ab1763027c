-- Sellable stock per (sku, location) from the reference `inventory` schema (fixtures/inventory/schema.sql).
-- Not used by code yet: the reference the exporter's default query is checked against.
--
--   sellable = max(on_hand - open reservations - safety buffer, 0) + incoming expected within $1 days
--
-- $1::int  include_future_days: incoming stock counts when expected_on <= current_date + $1 (0 = today).
--
-- Choices:
-- * Keys are every (sku, location) with a stock_on_hand row or with incoming stock in the window.
--   Reservations or a safety buffer alone do not create a key: with nothing on hand the result is 0,
--   which is what "no row" already means to the exporter.
-- * Only active items at active locations are returned. A key that drops out (item deactivated,
--   store closed) must be sent to the OMS as an explicit 0 by the diff against sent_state, not here.
-- * The floor at 0 applies before incoming is added, so an oversold (negative) on-hand or a large
--   buffer never eats into stock that is on its way.
-- * A reservation counts while status = 'open' and expires_at is null or after now(). now() is the
--   transaction start: inside a snapshot transaction every row sees the same instant. An expiry
--   passing changes the result with no write to any table (a time-triggered change).
-- * Incoming counts while status = 'expected', including overdue rows (expected_on in the past):
--   the goods are still due until someone marks them received or cancelled. current_date follows
--   the session TimeZone, the same zone the seed used to turn expected_in_days into dates.
-- * Missing inputs count as 0 (coalesce). Sums are bigint inside, the result is cast to integer
--   so both pg and PGlite return a number.
with reserved as (
  select sku, location, sum(quantity) as quantity
  from inventory.reservations
  where status = 'open' and (expires_at is null or expires_at > now())
  group by sku, location
),
incoming as (
  select sku, location, sum(quantity) as quantity
  from inventory.incoming_stock
  where status = 'expected' and expected_on <= current_date + $1::int
  group by sku, location
),
keys as (
  select sku, location from inventory.stock_on_hand
  union
  select sku, location from incoming
)
select
  k.sku,
  k.location,
  (greatest(coalesce(oh.quantity, 0) - coalesce(r.quantity, 0) - coalesce(ss.quantity, 0), 0)
    + coalesce(i.quantity, 0))::integer as sellable
from keys k
join inventory.items it on it.sku = k.sku and it.active
join inventory.locations l on l.code = k.location and l.active
left join inventory.stock_on_hand oh on oh.sku = k.sku and oh.location = k.location
left join reserved r on r.sku = k.sku and r.location = k.location
left join inventory.safety_stock ss on ss.sku = k.sku and ss.location = k.location
left join incoming i on i.sku = k.sku and i.location = k.location
order by k.sku, k.location
