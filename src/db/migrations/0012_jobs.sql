-- Import jobs (issue 15): what an OMS answered to each step of a delivery's job, so that a
-- restart (or another process) resumes polling instead of sending again; and the records the
-- OMS rejected, as its poll reported them.
create table stock_sync.jobs (
  delivery_id bigint primary key references stock_sync.deliveries (id) on delete cascade,
  subscription text not null,
  -- the run (full or delta) the part belongs to
  snapshot_id text,
  -- sending (nothing accepted yet) | polling (the OMS accepted the part) | done | failed
  phase text not null,
  -- the JSON answers of open/send/close, by step name
  responses jsonb not null default '{}',
  polling_since timestamptz,
  polls int not null default 0,
  -- when an attempt last stopped polling without an end (pause, superseded, lease, shutdown)
  stopped_at timestamptz,
  last_poll jsonb,
  -- the first rejected records ({sku, location, reason}) and how many there were in all
  rejected jsonb not null default '[]',
  rejected_count int not null default 0,
  attempt int not null default 0,
  updated_at timestamptz not null default now()
);

-- `open` runs once per full or delta: its answer (e.g. a Fluent job id) serves every part.
create table stock_sync.job_runs (
  subscription text not null,
  snapshot_id text not null,
  response jsonb not null,
  opened_at timestamptz not null default now(),
  primary key (subscription, snapshot_id)
);
