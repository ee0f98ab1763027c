-- When each request of an import job (issue 15) had been answered at the latest, on the
-- database's clock, for a rate-limited subscription. A job makes several requests per attempt
-- (open, send, close, every poll), each in the subscription's rate-limit window, but an attempt
-- records one row in stock_sync.attempts, and none at all when it is cut short (a stop, a lost
-- lease, kill -9) while the job is still polling. A process that takes the subscription seeds its
-- window from both tables (recentAnswers), so the OMS's window holds across a restart or a
-- takeover. Written once the request is answered (jobs/state.ts recordJobRequest), before the
-- next one goes; rows older than the window are pruned by that write, the rest by retention.
create table stock_sync.job_requests (
  subscription text not null,
  answered_by timestamptz not null
);
create index job_requests_by_subscription on stock_sync.job_requests (subscription, answered_by);
