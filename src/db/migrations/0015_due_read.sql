-- The worker's read of its backlog, planned once per connection instead of at every read
-- (issue 16). Sent as a statement, it cost the server ~2 ms of CPU per read, three quarters of it
-- planning (its text had a `union all` branch per subscription, so it was never prepared), at
-- one read per ~50 messages: the largest share of PostgreSQL's CPU per message after the
-- outcome records. A prepared statement alone does not help: PostgreSQL keeps planning it anew
-- (a generic plan cannot know the limits or how many subscriptions ask, so its estimates are ten
-- times a custom plan's), and a generic plan made while the outbox was empty would read its
-- ranges by sequential scan for as long as it stays cached. Here the settings are the
-- function's own: always the generic plan, made with no sequential or bitmap scan (each range is
-- read from its index, in order, and stopped at its limit, whatever the tables held when it was
-- planned) and without JIT (its cost estimate is no measure of this work). Every other step is a
-- lateral subquery with a limit, which only a nested loop by key can run: no estimate can turn
-- it into a scan of the backlog. backlog-plans.test.ts checks the plan it runs.
--
-- For each subscription asked (the arrays, one element each), in one snapshot: its status, the
-- next due time of what is not due yet, and what may start now, earliest due first, skipping
-- what this process holds (p_skip, of every subscription: delivery ids are unique across them):
--   none: every due delivery, both due indexes merged;
--   key:  due heads of the keys (delivery_heads, kept by triggers) and due deliveries without a
--         key (each its own key). A head in flight is skipped, so its key sends nothing
--         meanwhile; a dead delivery holds its key, so that a resume before the replay cannot send
--         the key's later messages ahead of it (index deliveries_dead_by_key).
-- Rows are returned only while the subscription is enabled, leased to p_owner for p_for_ms more,
-- and not throttled: the last checks, made with the fetch, so a fetched row may start at once.
-- Each range reads at most its limit plus the skipped rows, however large the backlog or the
-- history (0007).
create function stock_sync.due_deliveries(
  p_now timestamptz, p_owner text, p_subs text[], p_orderings text[], p_limits int[],
  p_for_ms float8[], p_skip int8[]
) returns table (
  want bigint, sub_status text, next_due timestamptz,
  id bigint, message_id text, subscription text, ordering_key text, sequence bigint, status text,
  attempts int, next_attempt_at timestamptz, created_at timestamptz,
  subject text, payload bytea, content_type text, headers jsonb
) language plpgsql stable
set plan_cache_mode = force_generic_plan
set enable_seqscan = off
set enable_bitmapscan = off
set jit = off
as $$
#variable_conflict use_column
begin
  return query
  select r.want, s.status, nd.next_due,
    x.id, x.message_id, x.subscription, x.ordering_key, x.sequence, x.status, x.attempts,
    x.next_attempt_at, x.created_at, x.subject, x.payload, x.content_type, x.headers
  from unnest(p_subs, p_orderings, p_limits, p_for_ms) with ordinality as r(sub, ordering, lim, for_ms, want)
  left join stock_sync.subscriptions s on s.name = r.sub
  -- once per subscription (`offset 0`: not pulled up into the select list, run per row)
  cross join lateral (select least(
      (select min(n.next_attempt_at) from stock_sync.deliveries n
        where n.subscription = r.sub and n.status in ('pending', 'failed') and n.ordering_key is null
          and n.next_attempt_at > p_now),
      (select min(n.next_attempt_at) from stock_sync.deliveries n
        where n.subscription = r.sub and n.status in ('pending', 'failed') and n.ordering_key is not null
          and n.next_attempt_at > p_now)) as next_due offset 0) nd
  left join lateral (
    select d.id, d.message_id, d.subscription, d.ordering_key, d.sequence, d.status, d.attempts,
      d.next_attempt_at, d.created_at, m.subject, m.payload, m.content_type, m.headers
    from (
      (select h.delivery_id as id from stock_sync.delivery_heads h
        where r.ordering = 'key' and h.subscription = r.sub and h.due_at <= p_now
          and h.delivery_id <> all(p_skip)
        order by h.due_at, h.delivery_id limit r.lim)
      union all
      (select u.id from stock_sync.deliveries u
        where u.subscription = r.sub and u.status in ('pending', 'failed') and u.ordering_key is null
          and u.next_attempt_at <= p_now and u.id <> all(p_skip)
        order by u.next_attempt_at, u.id limit r.lim)
      union all
      (select k.id from stock_sync.deliveries k
        where r.ordering = 'none' and k.subscription = r.sub and k.status in ('pending', 'failed')
          and k.ordering_key is not null and k.next_attempt_at <= p_now and k.id <> all(p_skip)
        order by k.next_attempt_at, k.id limit r.lim)
    ) due
    cross join lateral (select * from stock_sync.deliveries d1
      where d1.id = due.id and d1.status in ('pending', 'failed') and d1.next_attempt_at <= p_now
      limit 1) d
    cross join lateral (select m1.subject, m1.payload, m1.content_type, m1.headers
      from stock_sync.messages m1 where m1.id = d.message_id limit 1) m
    where s.status = 'enabled' and s.lease_owner = p_owner
      and s.lease_until > now() + r.for_ms * interval '1 millisecond'
      and (s.throttled_until is null or s.throttled_until <= now())
      and (r.ordering <> 'key' or d.ordering_key is null or not exists (
        select 1 from stock_sync.deliveries dead
        where dead.subscription = d.subscription and dead.ordering_key = d.ordering_key
          and dead.status = 'dead' and dead.id < d.id))
    order by d.next_attempt_at, d.id limit r.lim
  ) x on true;
end $$;
