-- A 429/503 with Retry-After holds the whole subscription (every process) until then; the
-- database's clock, like the leases.
alter table stock_sync.subscriptions add column throttled_until timestamptz;
