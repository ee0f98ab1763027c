-- The connector's own state lives in schema stock_sync (created by the migrator).
-- One row describing this state database: which connector created it and when.
create table stock_sync.instance (
  id boolean primary key default true check (id),
  created_at timestamptz not null default now()
);
insert into stock_sync.instance default values;
