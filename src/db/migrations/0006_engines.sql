-- Processes that send (one row per running engine), so that each takes a fair share of the
-- subscriptions: a lease taker counts the live ones. `seen_at` is the database's clock, as are
-- the leases: clocks of different hosts are never compared.
create table stock_sync.engines (
  owner   text primary key,
  seen_at timestamptz not null default now()
);
