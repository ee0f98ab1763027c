-- Inbound order events (SPEC §7). One row per event id: the primary key is what makes intake
-- idempotent, including two identical requests racing each other. The payload itself is the
-- outbox message (message_id); no foreign key, so the retention purge of delivered messages
-- keeps the id here and a late duplicate is still recognised.
create table stock_sync.inbox (
  id          text primary key,        -- the event's `id`, else its `webhook-id`
  subject     text not null,           -- order.<type>
  received_at timestamptz not null,
  message_id  text not null,           -- the outbox message it became (its outbound webhook-id)
  routed_to   int not null             -- subscriptions it was fanned out to; 0 = unrouted
);
create index inbox_by_time on stock_sync.inbox (received_at);
-- /api/status reports unrouted events; this keeps that cheap however large the inbox grows.
create index inbox_unrouted on stock_sync.inbox (received_at) where routed_to = 0;
