-- Change capture per source: the watermark remembers which database it was read on, so a
-- re-pointed or restored source (another system identifier, database oid or name) makes the next
-- delta compare every key instead of trusting transaction ids from elsewhere.
alter table stock_sync.stock_watermark add column source_identity text;

-- The sent state by location: a location closed or reopened looks up all its keys.
create index stock_sent_by_location on stock_sync.stock_sent (location);
