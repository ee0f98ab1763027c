import { firstBinaryField } from "../db/binary-copy.js";
import type { Db, Queryable } from "../db/db.js";

/** LISTEN/NOTIFY channel: the payload is a comma-separated list of subscription names. */
export const OUTBOX_CHANNEL = "stock_sync_outbox";

const BACKLOG = "status in ('pending', 'failed')";

export type DeliveryRow = {
  id: number;
  message_id: string;
  subscription: string;
  ordering_key: string | null;
  sequence: number | null;
  status: string;
  attempts: number;
  next_attempt_at: Date;
  /** When the delivery was enqueued (for the enqueue-to-delivered latency). */
  created_at: Date;
  subject: string;
  payload: Uint8Array;
  content_type: string;
  headers: Record<string, string>;
};

export const insertMessage = (
  db: Queryable,
  m: {
    id: string;
    subject: string;
    payload: Buffer;
    contentType: string;
    headers: object;
    orderingKey: string | null;
    runId: number | null;
  },
) =>
  db.query(
    `insert into stock_sync.messages (id, subject, payload, content_type, headers, ordering_key, run_id)
     values ($1, $2, $3, $4, $5::jsonb, $6, $7)`,
    [m.id, m.subject, m.payload, m.contentType, JSON.stringify(m.headers), m.orderingKey, m.runId],
  );

export const insertDeliveries = (
  db: Queryable,
  messageId: string,
  orderingKey: string | null,
  subscriptions: string[],
  sequences: (number | null)[],
) =>
  db.query(
    `insert into stock_sync.deliveries (message_id, subscription, ordering_key, sequence)
     select $1, s, $2, q from unnest($3::text[], $4::int8[]) as t(s, q)`,
    [messageId, orderingKey, subscriptions, sequences],
  );

/** Takes the subscription's next stock sequence number (creating its row if needed). */
export async function nextSequence(db: Queryable, subscription: string): Promise<number> {
  const { rows } = await db.query<{ seq: number }>(
    `insert into stock_sync.subscriptions (name, next_sequence) values ($1, 2)
     on conflict (name) do update set next_sequence = stock_sync.subscriptions.next_sequence + 1
     returning next_sequence - 1 as seq`,
    [subscription],
  );
  return rows[0]!.seq;
}

export const notifyOutbox = (db: Queryable, subscriptions: string[]) =>
  db.query("select pg_notify($1, $2)", [OUTBOX_CHANNEL, subscriptions.join(",")]);

/**
 * Creates rows for configured subscriptions. A `status` in the config that differs from the one
 * seen at the last start is a config change and applies; otherwise the runtime status stands.
 */
export const syncSubscriptions = (db: Queryable, subs: { name: string; status: string }[]) =>
  db.query(
    `insert into stock_sync.subscriptions (name, status, config_status, status_reason)
     select n, s, s, 'config' from unnest($1::text[], $2::text[]) as t(n, s)
     on conflict (name) do update set
       status = case when stock_sync.subscriptions.config_status is distinct from excluded.config_status
                     then excluded.status else stock_sync.subscriptions.status end,
       status_reason = case when stock_sync.subscriptions.config_status is distinct from excluded.config_status
                     then 'config' else stock_sync.subscriptions.status_reason end,
       config_status = excluded.config_status`,
    [subs.map((s) => s.name), subs.map((s) => s.status)],
  );

export type LeaseRequest = {
  owner: string;
  /** Leases to renew: ours, with a worker that proved alive since the last renewal. */
  renew: string[];
  /** Subscriptions we may take when free, expired, or held by a process known dead. */
  candidates: string[];
  /** How many more we may take (our fair share less what we renew). */
  take: number;
  leaseMs: number;
  deadOwners: string[];
};

/**
 * Renews our leases and takes free ones, on the database's clock (each host's own clock would
 * move lease expiry by the skew between them). Returns the leases we hold, and for each one
 * taken now whether its previous holder let it go (released) or not (expired, or dead): then
 * what that process sent last is not all recorded.
 */
export async function acquireLeases(
  db: Queryable,
  req: LeaseRequest,
): Promise<{ name: string; taken: boolean; unclean: boolean }[]> {
  const { rows } = await db.query<{ name: string; taken: boolean; unclean: boolean }>(
    `with renewed as (
       -- Our own leases are renewed even when an attempt holds the row (waiting a moment):
       -- skipping a locked row here lost the lease under load. Only free ones are taken with skip locked.
       update stock_sync.subscriptions set lease_until = now() + $5 * interval '1 millisecond'
       where name = any($2::text[]) and lease_owner = $1
       returning name),
     free as (
       select name, lease_owner is not null as unclean from stock_sync.subscriptions
       -- (our own too once expired: a worker that stalled and was dropped, see engine.ts)
       where name = any($3::text[])
         and (lease_owner is null or lease_until < now() or lease_owner = any($6::text[]))
       order by name limit $4
       for update skip locked),
     taken as (
       update stock_sync.subscriptions s set lease_owner = $1, lease_until = now() + $5 * interval '1 millisecond'
       from free where s.name = free.name
       returning s.name, free.unclean)
     select name, false as taken, false as unclean from renewed
     union all select name, true, unclean from taken`,
    [req.owner, req.renew, req.candidates, Math.max(0, req.take), req.leaseMs, req.deadOwners],
  );
  return rows;
}

/**
 * Says this process is alive and counts the live ones (seen within a lease, not known dead),
 * itself included: each takes a fair share of the subscriptions. Also reads the database's clock.
 */
export async function heartbeat(
  db: Queryable,
  owner: string,
  leaseMs: number,
  deadOwners: string[],
): Promise<{ live: number; now: Date }> {
  const { rows } = await db.query<{ live: number; now: Date }>(
    `with me as (
       insert into stock_sync.engines (owner, seen_at) values ($1, now())
       on conflict (owner) do update set seen_at = now())
     select count(*)::int + 1 as live, clock_timestamp() as now from stock_sync.engines
     where owner <> $1 and seen_at > now() - $2 * interval '1 millisecond' and owner <> all($3::text[])`,
    [owner, leaseMs, deadOwners],
  );
  return { live: rows[0]?.live ?? 1, now: new Date(rows[0]?.now ?? Date.now()) };
}

/** Forgets processes not seen for a long time, and this one when it stops. */
export const forgetEngines = (db: Queryable, owner: string, olderThanMs: number) =>
  db.query(
    "delete from stock_sync.engines where owner = $1 or seen_at < now() - $2 * interval '1 millisecond'",
    [owner, olderThanMs],
  );

export const leaseOwners = async (db: Queryable, names: string[]) =>
  (
    await db.query<{ owner: string }>(
      "select distinct lease_owner as owner from stock_sync.subscriptions where name = any($1::text[]) and lease_owner is not null",
      [names],
    )
  ).rows.map((r) => r.owner);

/** Lets this owner's leases go: all of them (stopping), or the named ones (handed over). */
export const releaseLeases = (db: Queryable, owner: string, names: string[] | null = null) =>
  db.query(
    `update stock_sync.subscriptions set lease_owner = null, lease_until = null
     where lease_owner = $1 and ($2::text[] is null or name = any($2::text[]))`,
    [owner, names],
  );

export async function subscriptionStatuses(db: Queryable, names: string[]): Promise<Map<string, string>> {
  const { rows } = await db.query<{ name: string; status: string }>(
    "select name, status from stock_sync.subscriptions where name = any($1::text[])",
    [names],
    { name: "stock_sync_subscription_statuses" },
  );
  return new Map(rows.map((r) => [r.name, r.status]));
}

const DELIVERY_COLUMNS = `d.id, d.message_id, d.subscription, d.ordering_key, d.sequence, d.status, d.attempts,
  d.next_attempt_at, d.created_at, m.subject, m.payload, m.content_type, m.headers`;

/**
 * fifo: only the head of the backlog; nothing behind it may go first. `subscription` is given as
 * a range and the order includes it, so only deliveries_backlog returns rows in this order: with
 * `=`, the planner may walk the primary key through the whole history instead.
 */
export const backlogHead = (db: PayloadReader, subscription: string) => backlogRow(db, subscription);

/**
 * `where`: the first delivery of $1's backlog (after delivery `after`, or with delivery `without`
 * left out; each a placeholder).
 */
const backlogFirst = (after?: string, without?: string) => `where d.id = (select id from stock_sync.deliveries
  where subscription >= $1 and subscription <= $1 and ${BACKLOG}${after ? ` and id > ${after}` : ""}${without ? ` and id <> ${without}` : ""}
  order by subscription, id limit 1)`;

/** The first delivery of the backlog (after delivery `afterId`), its payload read apart if big. */
async function backlogRow(db: PayloadReader, subscription: string, afterId?: number): Promise<DeliveryRow[]> {
  const { rows } = await db.query<SmallPayload<DeliveryRow>>(
    `select ${DELIVERY_COLUMNS.replace("m.payload", smallPayload(db))} from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
     ${backlogFirst(afterId === undefined ? undefined : "$2")}`,
    afterId === undefined ? [subscription] : [subscription, afterId],
  );
  const [row] = rows;
  if (!row) return [];
  const { payload_size: _, ...head } = row;
  const payload = head.payload ?? (await bigPayload(db, head.id));
  return payload ? [{ ...head, payload }] : [];
}

/**
 * backlogHead without the message's payload (the worker read it ahead: backlogPayloadAfter). With
 * `lease`, each row also says whether the last checks pass (`sendable`, as the due fetch makes
 * them), so a head that passes may start without another round trip (issue 13). `without`: the
 * head once that delivery has left the backlog (its outcome is being recorded).
 */
export const backlogHeadMeta = async (
  db: Queryable,
  subscription: string,
  lease?: SendingLease,
  without?: number,
) => {
  const values: unknown[] = [subscription];
  const at = (v: unknown) => `$${values.push(v)}`;
  const checks = lease ? `, ${sendable(at(lease.owner), at(lease.forMs))} as sendable` : "";
  const where = backlogFirst(undefined, without === undefined ? undefined : at(without));
  const { rows } = await db.query<Omit<DeliveryRow, "payload"> & { sendable?: boolean }>(
    `select ${DELIVERY_COLUMNS.replace("m.payload, ", "")}${checks}
     from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
     ${where}`,
    values,
  );
  return rows;
};

/**
 * fifo, read ahead: the delivery behind `afterId` in the backlog with its message's payload, read
 * while `afterId` is being sent (a stock part's megabyte then does not wait between two parts),
 * and staged where the destination can (issue 13). Its row is as it was then: the worker reads
 * the head again before it sends anything.
 */
export const backlogPayloadAfter = async (db: PayloadReader, subscription: string, afterId: number) =>
  (await backlogRow(db, subscription, afterId))[0];

/** A database the payload reads use: COPY where the back end has it (see bigPayload). */
export type PayloadReader = Queryable & Pick<Db, "copyTo">;

/** A row whose payload is left out (null) when it is big and read apart (see bigPayload). */
type SmallPayload<T extends { payload: Uint8Array }> = Omit<T, "payload"> & {
  payload: Uint8Array | null;
  payload_size: number;
};

/**
 * Payloads up to this size come with their row; a bigger one (a stock part: ~1 MB) is read apart,
 * by binary COPY, where the back end can (a real PostgreSQL server).
 */
const INLINE_PAYLOAD_BYTES = 64 * 1024;

// octet_length of a stored (TOASTed) bytea is read from its header: the value is not fetched
const smallPayload = (db: PayloadReader) =>
  db.copyTo
    ? `case when octet_length(m.payload) <= ${INLINE_PAYLOAD_BYTES} then m.payload end as payload, octet_length(m.payload) as payload_size`
    : "m.payload, octet_length(m.payload) as payload_size";

/**
 * Delivery `id`'s message payload as bytes, by `COPY … (FORMAT binary)`: `pg` reads a bytea's
 * text form (hex, twice the size) into a string and then into bytes, ~15–25 ms of CPU a megabyte
 * against ~4 this way (issue 13's profile of a full to SFTP). Undefined when the message is gone
 * (purged since its row was read).
 */
async function bigPayload(db: PayloadReader, id: number): Promise<Uint8Array | undefined> {
  if (!db.copyTo || !Number.isSafeInteger(id)) throw new Error(`cannot read delivery ${id}'s payload apart`);
  const chunks: Buffer[] = [];
  let length = 0;
  // COPY takes no parameters: the id is an integer, checked above
  for await (const chunk of db.copyTo(
    `copy (select m.payload from stock_sync.deliveries d join stock_sync.messages m on m.id = d.message_id
           where d.id = ${id}) to stdout (format binary)`,
  )) {
    chunks.push(chunk);
    length += chunk.length;
  }
  const payload = firstBinaryField(Buffer.concat(chunks, length));
  if (payload === null) throw new Error(`delivery ${id}'s payload is NULL`);
  return payload;
}

/** Who may send, and for how long (ms, on the database's clock) the lease must still hold. */
export type SendingLease = { owner: string; forMs: number };

/**
 * The last checks on a delivery `d` (the owed backlog is the caller's): its subscription is
 * enabled and leased to `owner` beyond `until` (placeholders). Made by `mayAttempt` for a row
 * that waited; the fetch (migration 0015) makes the same checks on the subscription row it reads.
 */
const sendable = (owner: string, forMs: string) =>
  `exists (select 1 from stock_sync.subscriptions s where s.name = d.subscription and s.status = 'enabled'
     and s.lease_owner = ${owner} and s.lease_until > now() + ${forMs} * interval '1 millisecond'
     and (s.throttled_until is null or s.throttled_until <= now()))`;

/**
 * What may start now, earliest due first, skipping what this process already holds. `key`: the
 * head of each key's backlog, when due and not held by a dead delivery; `none`: any due delivery.
 * (`fifo` reads `backlogHead`.) The same statement as the worker's (`dueForSubscriptions`), for
 * one subscription.
 */
export async function dueDeliveries(
  db: Queryable,
  subscription: string,
  ordering: "key" | "none",
  now: Date,
  limit: number,
  skip: number[],
  lease: SendingLease,
): Promise<DeliveryRow[]> {
  const [answer] = await dueForSubscriptions(db, now, lease.owner, [
    { subscription, ordering, limit, skip, forMs: lease.forMs },
  ]);
  return answer?.rows ?? [];
}

/** When the next not-yet-due delivery of the backlog becomes due (to set a timer). */
export async function nextDueAt(db: Queryable, subscription: string, now: Date): Promise<Date | null> {
  const { rows } = await db.query<{ at: Date | null }>(`select ${nextDue("$1", "$2")} as at`, [
    subscription,
    now,
  ]);
  return rows[0]?.at ?? null;
}

// one index probe each (min() reads the first entry after `now`)
const nextDue = (sub: string, now: string) => {
  const next = (keyed: boolean) => `(select min(next_attempt_at) from stock_sync.deliveries
    where subscription = ${sub} and ${BACKLOG} and ordering_key is ${keyed ? "not " : ""}null and next_attempt_at > ${now})`;
  return `least(${next(false)}, ${next(true)})`;
};

/** One subscription's read of its backlog, for `dueForSubscriptions`. */
export type DueRequest = {
  subscription: string;
  ordering: "key" | "none";
  limit: number;
  /** Deliveries this process holds already (not fetched again). */
  skip: number[];
  /** How long (ms) the lease must still hold for a fetched row to start at once. */
  forMs: number;
};

/** Its answer: the subscription's status (undefined: no row), what may start, the next due time. */
export type DueAnswer = { status: string | undefined; rows: DeliveryRow[]; nextDueAt: Date | null };

/**
 * For every subscription that wants rows, in one statement (#16: twenty workers each reading
 * their backlog made half the statements of a run): its status, what may start now and when the
 * next delivery is due, in one snapshot. One round trip serves what took three. The statement is
 * the function of migration 0015 (what it reads, and why it is a function: its plan).
 */
export async function dueForSubscriptions(
  db: Queryable,
  now: Date,
  owner: string,
  requests: readonly DueRequest[],
): Promise<DueAnswer[]> {
  if (requests.length === 0) return [];
  const { rows } = await db.query<
    DeliveryRow & { want: number; sub_status: string | null; next_due: Date | null }
  >(
    "select * from stock_sync.due_deliveries($1, $2, $3, $4, $5, $6, $7)",
    [
      now,
      owner,
      requests.map((r) => r.subscription),
      requests.map((r) => r.ordering),
      requests.map((r) => r.limit),
      requests.map((r) => r.forMs),
      requests.length === 1 ? requests[0]!.skip : requests.flatMap((r) => r.skip),
    ],
    { name: "stock_sync_due" },
  );
  const answers: DueAnswer[] = requests.map(() => ({ status: undefined, rows: [], nextDueAt: null }));
  for (const row of rows) {
    // `want` counts from 1 (with ordinality)
    const a = answers[Number(row.want) - 1]!;
    a.status = row.sub_status ?? undefined;
    a.nextDueAt = row.next_due;
    if (row.id === null) continue;
    // (`want`, `sub_status` and `next_due` travel with the row: harmless, not worth a copy)
    a.rows.push(row);
  }
  // each subscription in its own order; the join does not promise to keep it
  for (const a of answers) a.rows.sort((x, y) => +x.next_attempt_at - +y.next_attempt_at || x.id - y.id);
  return answers;
}

/**
 * The last check before requests go out: of the given deliveries, those still owed while the
 * subscription is enabled and this process holds its lease for at least `forMs`. A pause committed by
 * any process is seen here. One query serves every attempt about to start (db/coalesce.ts).
 */
export async function mayAttempt(
  db: Queryable,
  deliveryIds: number[],
  owner: string,
  forMs: number,
): Promise<Set<number>> {
  const { rows } = await db.query<{ id: string | number }>(
    `select d.id from stock_sync.deliveries d
     where d.id = any($1::int8[]) and d.${BACKLOG} and ${sendable("$2", "$3")}`,
    [deliveryIds, owner, forMs],
    // once per batch of requests, and a plan by primary key whatever the values
    { name: "stock_sync_may_attempt" },
  );
  return new Set(rows.map((r) => Number(r.id)));
}

/**
 * An attempt recorded without `answered_by` (before migration 0014, so in the first window after
 * the upgrade; or by hand) is counted answered this much after its start plus its request's
 * duration: the preparation of the request and the recorder's clock estimate are not in those
 * (what 85a905a counted for every attempt).
 */
const UNBOUNDED_ANSWER_MARGIN_MS = 250;

/**
 * When this subscription's latest requests were answered at the latest, as ages in ms on the
 * database's clock, newest first, at most `cap`, within `windowMs`: a worker that takes the
 * subscription seeds its rate limit with them, so a restart or a handover keeps the receiver's
 * window. Its attempts, and each request of its import jobs (job_requests, migration 0016: a job
 * makes several per attempt, and records no attempt when cut short while polling). A finished
 * job's attempt row is then one answer more than the OMS saw: the window errs full, never empty.
 */
export async function recentAnswers(
  db: Queryable,
  subscription: string,
  windowMs: number,
  cap: number,
): Promise<number[]> {
  const answered = `coalesce(a.answered_by,
    a.attempted_at + (a.duration_ms + ${UNBOUNDED_ANSWER_MARGIN_MS}) * interval '1 millisecond')`;
  const since = "now() - $2 * interval '1 millisecond' - interval '1 minute'";
  const { rows } = await db.query<{ age: number }>(
    `select greatest(0, extract(epoch from now() - answered) * 1000)::float8 as age
     from ((select ${answered} as answered
            from stock_sync.deliveries d join stock_sync.attempts a on a.delivery_id = d.id
            where d.subscription = $1
              and d.status in ('pending', 'failed', 'delivered', 'dead', 'superseded')
              and d.updated_at > ${since} and a.attempted_at > ${since}
            order by 1 desc limit $3)
           union all
           (select j.answered_by from stock_sync.job_requests j
            where j.subscription = $1 and j.answered_by > ${since}
            order by 1 desc limit $3)) r
     order by answered desc
     limit $3`,
    [subscription, windowMs, cap],
  );
  return rows.map((r) => Number(r.age)).filter((age) => age < windowMs);
}
