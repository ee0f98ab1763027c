-- Backlog queries bounded by what they return, not by the size of the backlog or the history
-- (issue 11.6): with 300,000 owed rows the key fetch sorted the whole backlog on every fetch, the
-- due queries walked every owed row while none was due.

-- What is due, earliest first, and the next due time: one range of one of these two. Rows with
-- and without an ordering key apart, so that each query matches exactly one index (a planner
-- choosing between look-alike indexes could pick the one that reads the blocked rows too); under
-- `key` a delivery without a key is its own key, so always a head.
create index deliveries_due_unkeyed on stock_sync.deliveries (subscription, next_attempt_at, id)
  where status in ('pending', 'failed') and ordering_key is null;
create index deliveries_due_keyed on stock_sync.deliveries (subscription, next_attempt_at, id)
  where status in ('pending', 'failed') and ordering_key is not null;
-- A key's backlog in order: its head is the first entry.
create index deliveries_key_backlog on stock_sync.deliveries (subscription, ordering_key, id)
  where status in ('pending', 'failed') and ordering_key is not null;

-- `key`: the head (oldest owed delivery) of every ordering key that has a backlog, with its due
-- time, so the fetch reads due heads from an index instead of sorting the backlog to find them.
-- Kept by the triggers below in the transaction of every write to `deliveries`, whoever writes
-- (enqueue, outcomes, replay, supersede, retention), so it is never stale.
create table stock_sync.delivery_heads (
  subscription text not null,
  ordering_key text not null,
  delivery_id  bigint,       -- null only inside the transaction that is recomputing the key
  due_at       timestamptz,
  primary key (subscription, ordering_key)
);
create index delivery_heads_due on stock_sync.delivery_heads (subscription, due_at, delivery_id);

-- Recomputes the heads of the given keys. Each key's row is locked first (created if missing),
-- in one order for all writers; the backlog is read afterwards, by a statement whose snapshot
-- sees every writer that held the lock before: the last writer of a key always sees the others.
create function stock_sync.refresh_delivery_heads(subs text[], keys text[]) returns void
language plpgsql as $$
begin
  insert into stock_sync.delivery_heads as h (subscription, ordering_key)
  select distinct s, k from unnest(subs, keys) as t(s, k) order by s, k
  on conflict (subscription, ordering_key) do update set delivery_id = h.delivery_id;

  with touched as (select distinct s, k from unnest(subs, keys) as t(s, k)),
  head as (
    select t.s, t.k, d.id, d.next_attempt_at
    from touched t left join lateral (
      select id, next_attempt_at from stock_sync.deliveries
      where subscription = t.s and ordering_key = t.k and status in ('pending', 'failed')
      order by id limit 1) d on true),
  gone as (
    delete from stock_sync.delivery_heads h using head
    where head.id is null and h.subscription = head.s and h.ordering_key = head.k)
  update stock_sync.delivery_heads h set delivery_id = head.id, due_at = head.next_attempt_at
  from head
  where head.id is not null and h.subscription = head.s and h.ordering_key = head.k
    and (h.delivery_id is distinct from head.id or h.due_at is distinct from head.next_attempt_at);
end $$;

-- Statement-level, with transition tables: one refresh per statement, whatever its row count;
-- rows without an ordering key (stock, notifications) cost a filter.
create function stock_sync.delivery_heads_inserted() returns trigger language plpgsql as $$
declare subs text[]; keys text[];
begin
  select array_agg(subscription), array_agg(ordering_key) into subs, keys from new_rows
  where ordering_key is not null and status in ('pending', 'failed');
  if subs is not null then perform stock_sync.refresh_delivery_heads(subs, keys); end if;
  return null;
end $$;

create function stock_sync.delivery_heads_updated() returns trigger language plpgsql as $$
declare subs text[]; keys text[];
begin
  -- A key changes head when a row enters or leaves the backlog or an owed row's due time moves.
  select array_agg(x.subscription), array_agg(x.ordering_key) into subs, keys from (
    select o.subscription, o.ordering_key from old_rows o join new_rows n on n.id = o.id
    where (o.ordering_key is not null or n.ordering_key is not null)
      and ((o.status in ('pending', 'failed')) <> (n.status in ('pending', 'failed'))
           or (n.status in ('pending', 'failed') and n.next_attempt_at <> o.next_attempt_at)
           or o.subscription <> n.subscription or o.ordering_key is distinct from n.ordering_key)
    union
    select n.subscription, n.ordering_key from old_rows o join new_rows n on n.id = o.id
    where n.ordering_key is not null
      and (o.subscription <> n.subscription or o.ordering_key is distinct from n.ordering_key)
  ) x where x.ordering_key is not null;
  if subs is not null then perform stock_sync.refresh_delivery_heads(subs, keys); end if;
  return null;
end $$;

create function stock_sync.delivery_heads_deleted() returns trigger language plpgsql as $$
declare subs text[]; keys text[];
begin
  select array_agg(subscription), array_agg(ordering_key) into subs, keys from old_rows
  where ordering_key is not null and status in ('pending', 'failed');
  if subs is not null then perform stock_sync.refresh_delivery_heads(subs, keys); end if;
  return null;
end $$;

create function stock_sync.delivery_heads_truncated() returns trigger language plpgsql as $$
begin
  delete from stock_sync.delivery_heads;
  return null;
end $$;

create trigger delivery_heads_inserted after insert on stock_sync.deliveries
  referencing new table as new_rows for each statement execute function stock_sync.delivery_heads_inserted();
create trigger delivery_heads_updated after update on stock_sync.deliveries
  referencing old table as old_rows new table as new_rows
  for each statement execute function stock_sync.delivery_heads_updated();
create trigger delivery_heads_deleted after delete on stock_sync.deliveries
  referencing old table as old_rows for each statement execute function stock_sync.delivery_heads_deleted();
create trigger delivery_heads_truncated after truncate on stock_sync.deliveries
  for each statement execute function stock_sync.delivery_heads_truncated();

-- The backlog there is now (the triggers above hold the table's lock until this commits).
insert into stock_sync.delivery_heads (subscription, ordering_key, delivery_id, due_at)
select distinct on (subscription, ordering_key) subscription, ordering_key, id, next_attempt_at
from stock_sync.deliveries
where status in ('pending', 'failed') and ordering_key is not null
order by subscription, ordering_key, id;
