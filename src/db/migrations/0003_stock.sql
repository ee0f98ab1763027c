-- The stock export's state: what was last sent per key, the change-capture watermark, and a
-- record of every full and delta run.

-- What the stock stream last said about each key (enqueued = will be delivered, in order).
create table stock_sync.stock_sent (
  sku        text not null,
  location   text not null,
  quantity   bigint not null,
  run_id     bigint not null,
  primary key (sku, location)
);

create table stock_sync.stock_runs (
  id           bigserial primary key,
  kind         text not null check (kind in ('full', 'delta')),
  trigger      text not null,            -- schedule | start | cli | api
  snapshot_id  text not null,            -- stock-sync-snapshot-id of its messages
  status       text not null check (status in ('running', 'enqueued', 'empty', 'refused', 'failed', 'dry-run')),
  started_at   timestamptz not null,
  finished_at  timestamptz,
  rows         bigint,
  parts        int,
  -- the source's pg_current_snapshot() the run read in; deltas resume from the last one
  source_snapshot text,
  detail       text
);
create index stock_runs_recent on stock_sync.stock_runs (kind, id desc);

-- Messages of a stock run, to know when a full was delivered (the guard compares against it).
alter table stock_sync.messages add column run_id bigint;
create index messages_by_run on stock_sync.messages (run_id) where run_id is not null;

-- The watermark deltas continue from; one row.
create table stock_sync.stock_watermark (
  id              boolean primary key default true check (id),
  source_snapshot text not null,          -- pg_snapshot as text
  read_at         timestamptz not null,   -- source clock when read: for time-based changes
  run_id          bigint not null
);

-- One row per scheduled fire, so several processes run each tick once (node-cron's run coordinator).
create table stock_sync.cron_runs (
  key        text primary key,
  claimed_by text not null,
  claimed_at timestamptz not null
);

-- Only one stock run (full or delta) at a time across processes.
create table stock_sync.stock_lock (
  id     boolean primary key default true check (id),
  owner  text,
  until  timestamptz
);
insert into stock_sync.stock_lock default values;
