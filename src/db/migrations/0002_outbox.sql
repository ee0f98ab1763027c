-- The delivery engine: one outbox for everything outbound (stock files, order events,
-- notifications). A message is stored once; each matching subscription gets a delivery row.

-- Runtime state of each configured subscription. The config says what a subscription is; this
-- table says how it is doing, and survives restarts.
create table stock_sync.subscriptions (
  name                 text primary key,
  status               text not null default 'enabled'
                       check (status in ('enabled', 'paused', 'deactivated')),
  status_reason        text,
  status_changed_at    timestamptz not null default now(),
  -- the `status` the config asked for when last started: a change there applies on restart
  config_status        text,
  consecutive_failures int not null default 0,
  -- stock messages carry a per-subscription sequence number, strictly increasing
  next_sequence        bigint not null default 1,
  -- the one process sending for this subscription, so rate limit and order hold across processes
  lease_owner          text,
  lease_until          timestamptz,
  last_success_at      timestamptz,
  last_failure_at      timestamptz,
  last_status          int,
  last_error           text
);

create table stock_sync.messages (
  id           text primary key,          -- the webhook-id, stable across attempts and replays
  subject      text not null,
  payload      bytea not null,
  content_type text not null,
  headers      jsonb not null default '{}', -- extra headers (stock-sync-kind, -part, …)
  ordering_key text,                      -- e.g. the order id, for ordering: key
  created_at   timestamptz not null default now()
);

create table stock_sync.deliveries (
  id              bigserial primary key,  -- enqueue order is delivery order
  message_id      text not null references stock_sync.messages (id) on delete cascade,
  subscription    text not null,
  ordering_key    text,
  sequence        bigint,
  status          text not null default 'pending'
                  check (status in ('pending', 'failed', 'delivered', 'dead', 'superseded')),
  attempts        int not null default 0,  -- attempts in the current round (a replay starts a new one)
  next_attempt_at timestamptz not null default now(),
  created_at      timestamptz not null default now(),
  updated_at      timestamptz not null default now(),
  delivered_at    timestamptz,
  last_status     int,
  last_error      text,
  unique (message_id, subscription)
);
-- The worker's hot path: the undelivered backlog of one subscription in order.
create index deliveries_backlog on stock_sync.deliveries (subscription, id)
  where status in ('pending', 'failed');
create index deliveries_by_status on stock_sync.deliveries (subscription, status, updated_at);

create table stock_sync.attempts (
  id              bigserial primary key,
  delivery_id     bigint not null references stock_sync.deliveries (id) on delete cascade,
  attempted_at    timestamptz not null,
  duration_ms     int not null,
  status          int,            -- HTTP status, when there was a response
  error_class     text,           -- timeout | connect | network | tls | file | mail | other
  error           text,
  response_body   text,           -- first 4 KB
  outcome         text not null,  -- delivered | retry | dead | gone
  next_attempt_at timestamptz
);
create index attempts_by_delivery on stock_sync.attempts (delivery_id, id);
create index attempts_by_time on stock_sync.attempts (attempted_at);

-- When a notification of a kind was last sent about a subscription: at most one per window.
create table stock_sync.notifications_sent (
  subscription text not null,
  kind         text not null,
  sent_at      timestamptz not null,
  primary key (subscription, kind)
);
