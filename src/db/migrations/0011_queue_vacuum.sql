-- The outbox is a queue table (issue 11.6). Every outcome rewrites its delivery, and the status
-- and due time it changes are indexed, so no update is HOT: each leaves a dead row and dead index
-- entries that every due fetch walks until a vacuum. PostgreSQL's default waits for 20% of the
-- table to be dead (260,000 rows of a 1.3M-row outbox); after a replay or an outage the `none`
-- drain then ran at 0.40x its speed on an empty table. Vacuum (and analyse: the backlog's shape
-- changes as fast) at 2% instead; a vacuum skips the pages the visibility map marks all-visible,
-- so the delivered history costs little each time.
alter table stock_sync.deliveries set (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000,
  autovacuum_analyze_scale_factor = 0.02, autovacuum_analyze_threshold = 1000);
alter table stock_sync.delivery_heads set (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
alter table stock_sync.attempts set (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);
