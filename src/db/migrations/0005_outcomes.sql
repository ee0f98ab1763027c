-- Recording outcomes and notifications (issue 11).

-- Whether a `failing` notice went out that no `recovered` has answered yet: the next success sends
-- one, whatever the failure count is by then (a resume resets the count). Subscriptions failing
-- now whose last `failing` notice is newer than their last `recovered` start with it set.
alter table stock_sync.subscriptions add column failing_notified boolean not null default false;
update stock_sync.subscriptions s set failing_notified = true
where s.consecutive_failures > 0
  and exists (select 1 from stock_sync.notifications_sent f
              where f.subscription = s.name and f.kind = 'failing'
                and f.sent_at > coalesce((select r.sent_at from stock_sync.notifications_sent r
                                          where r.subscription = s.name and r.kind = 'recovered'),
                                         '-infinity'::timestamptz));

-- Under `ordering: key` a dead delivery holds its key (later messages of the key wait until it is
-- replayed): the fetch asks, for each key's head, whether an older dead delivery of the key exists.
create index deliveries_dead_by_key on stock_sync.deliveries (subscription, ordering_key, id)
  where status = 'dead' and ordering_key is not null;
