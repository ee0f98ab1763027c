-- When an attempt's answer had come at the latest, on the database's clock (issue 11.4 edge): a
-- process that takes a rate-limited subscription seeds its window with it (recentAnswers), and
-- the receiver's window holds only if no answer is counted earlier than its request arrived.
-- attempted_at + duration_ms could not say it: attempted_at is taken before the request is
-- prepared (a body.template reshaping a large event took ~250 ms) and duration_ms covers the
-- request alone, both stay what the attempt log shows (start, and the receiver's time). The
-- recorder adds what its estimate of the database's clock may be behind (outbox/answer.ts).
-- Null for attempts recorded before this migration, or by hand: those are counted with a margin.
alter table stock_sync.attempts add column answered_by timestamptz;
