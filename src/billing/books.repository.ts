import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Injectable } from '@nestjs/common';
import { DataSource, EntityManager } from 'typeorm';
import type { Nanos } from '../common/money';
import { KeyedBatcher } from '../common/keyed-batcher';
import { sqlParams } from '../db/sql-params';
import { assertTenantId, perRowTenantQuery, rowsOf, tenantQuery } from '../db/tenant-scope';
import { CACHE_ROWS_PARAMS, CacheEntry, cacheRowsParams, cacheRowsSql } from './answer-cache.repository';
import type { LedgerEntry } from './ledger.service';

/** A paid answer kept by its guard, for a retry of the same request. */
export interface GuardedAnswer {
  provider: string;
  model: string;
  content: string;
  finishReason: string;
  inputTokens: number;
  cachedInputTokens: number;
  outputTokens: number;
  costNanos: Nanos;
}

/** A provider reported more tokens than the bound the call was admitted with (tokens.ts). */
export interface TokenIncident {
  estimatedInputTokens: number;
  reportedInputTokens: number;
  maxOutputTokens: number;
  reportedOutputTokens: number;
}

/** What a guarded reservation found when it could not reserve. */
export interface GuardState {
  leaseHeld: boolean;
  state: 'in_flight' | 'answered' | null;
  token: string | null;
  leftMs: number;
  answer: GuardedAnswer | null;
  /** the provider batch an in-flight call waits in (its sender may have stopped): a retry can take it over */
  batch: BatchRef | null;
}

/**
 * Where a guarded call sent in a provider batch waits: the batch, its line, and the reservation
 * holding its budget. `batchId` is null when only the batch's upload was named (its sender stopped
 * before it named the batch): the batch, if the provider made one, is the one made from `fileId`.
 */
export interface BatchRef {
  provider: string;
  batchId: string | null;
  fileId: string | null;
  line: string;
  reservationId: string;
  /** when the guard was taken (ms since the epoch): the batch was made after it */
  guardedAt: number;
}

/** A guarded call's batch line, recorded on its guard when the batch's upload is made, and again when the batch is. */
export interface BatchedGuard {
  tenantId: string;
  key: string;
  token: string;
  line: string;
  reservationId: string;
}

/** A batched call taken over from the process that sent it: its reservation, and the batch it waits in. */
export interface AdoptedCall {
  reservationId: string;
  period: string;
  amount: Nanos;
  batch: BatchRef;
}

/** One settled call: what was charged, the period after it, and whether it raised an incident. */
export interface Settlement {
  charged: Nanos;
  spent: Nanos;
  cap: Nanos;
  incident: boolean;
}

/** The lease a guarded call may start under: the job's, held by this worker. */
export interface Lease {
  jobId: string;
  holder: string;
}

/**
 * The call a reservation holds budget for, as its ledger row will name it: if its process dies
 * before settling, the sweeper writes this row (outcome lost_in_flight) and an incident.
 */
export interface ReservedCall {
  requestId?: string;
  callGroup: string;
  attempt: number;
  apiKeyId?: string;
  essayId?: string;
  purpose: string;
  tier?: string;
  provider?: string;
  model?: string;
  estimatedInputTokens?: number;
  maxOutputTokens?: number;
  batch?: boolean;
}

/** A reserved call as the reservation's `call` column keeps it (the ledger's column names). */
function callJson(c: ReservedCall | undefined): string | null {
  if (!c) return null;
  return JSON.stringify({
    request_id: c.requestId ?? null,
    call_group: c.callGroup,
    attempt: c.attempt,
    api_key_id: c.apiKeyId ?? null,
    essay_id: c.essayId ?? null,
    purpose: c.purpose,
    tier: c.tier ?? null,
    provider: c.provider ?? null,
    model: c.model ?? null,
    estimated_input_tokens: c.estimatedInputTokens ?? null,
    max_output_tokens: c.maxOutputTokens ?? null,
    batch: c.batch ?? false,
  });
}

/** How long an answered guard is kept for retries before it is swept (the answer is personal data). */
const GUARD_RETENTION_MS = 3 * 86_400_000;

/** The ledger row's columns, in the order of its parameters ($1 is the tenant). */
const LEDGER_COLUMNS = [
  'tenant_id', 'id', 'period', 'request_id', 'call_group', 'attempt', 'api_key_id', 'essay_id', 'purpose', 'tier',
  'provider', 'model', 'cache_status', 'outcome', 'error_reason', 'input_tokens', 'cached_input_tokens', 'output_tokens',
  'estimated_input_tokens', 'usage_source', 'cost_nanos', 'saved_nanos', 'compression_saved_tokens', 'latency_ms', 'streamed', 'batch', 'price_window',
  'schedule_saved_nanos',
] as const;

/** Each ledger column's type, for rows given as JSON (settleLeasedSql). */
const LEDGER_TYPES: Record<(typeof LEDGER_COLUMNS)[number], string> = {
  tenant_id: 'uuid', id: 'uuid', period: 'text', request_id: 'text', call_group: 'uuid', attempt: 'int', api_key_id: 'uuid', essay_id: 'uuid',
  purpose: 'text', tier: 'text', provider: 'text', model: 'text', cache_status: 'text', outcome: 'text', error_reason: 'text',
  input_tokens: 'int', cached_input_tokens: 'int', output_tokens: 'int', estimated_input_tokens: 'int', usage_source: 'text',
  cost_nanos: 'bigint', saved_nanos: 'bigint', compression_saved_tokens: 'int', latency_ms: 'int', streamed: 'boolean', batch: 'boolean', price_window: 'text',
  schedule_saved_nanos: 'bigint',
};

/**
 * Settles the calls of many (tenant, period) groups on this instance's leases in one statement
 * (settleLeased): $1–$3 the groups (tenant, period, total), $4 the instance, $5 the leases' time to
 * live (ms), $6 the ledger rows as one JSON array of arrays (each a row's values in LEDGER_COLUMNS
 * order; one parameter, where one array a column made the driver encode 28 arrays a settlement),
 * $7 each group's lease's worst case still promised to calls in flight once these are written (its
 * in_flight_nanos, what the sweeper books if the instance dies); with `cacheRows`, the answers to
 * keep in the answer cache follow as cacheRowsSql's arrays, written for the tenants whose calls settled.
 */
const LEASE_TTL = 5;
const LEDGER_JSON = 6;
const IN_FLIGHT = 7;
const CACHE_ARRAYS_START = IN_FLIGHT + 1;
const settleLeasedSql = (cacheRows: boolean) => `WITH asked AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $${IN_FLIGHT}::bigint[]) AS g(tenant_id, period, total, in_flight)),
       rows AS (SELECT ${LEDGER_COLUMNS.map((c, i) => `(r->>${i})::${LEDGER_TYPES[c]} AS ${c}`).join(', ')}, (r->>${LEDGER_COLUMNS.length})::boolean AS retried
                  FROM jsonb_array_elements($${LEDGER_JSON}::jsonb) AS r),
       -- Rows already written: a group commit retried after its first attempt committed and its answer
       -- was lost. They are neither charged nor written again. (A first attempt still running is waited
       -- for at the ledger's key, and the retry fails with a key conflict; its next try sees the rows.)
       -- Only a retried call's row is looked for (each by the ledger's key, one after the other: OFFSET
       -- 0 keeps the lookup from being flattened into a join): a first attempt's row is new.
       written_ids AS MATERIALIZED (
         SELECT v.id, v.tenant_id, v.period, v.cost_nanos FROM (SELECT * FROM rows WHERE retried) v
          CROSS JOIN LATERAL (SELECT 1 FROM llm_calls c WHERE c.tenant_id = v.tenant_id AND c.id = v.id OFFSET 0) c),
       written AS (SELECT tenant_id, period, sum(cost_nanos) AS cost FROM written_ids GROUP BY tenant_id, period),
       g AS (SELECT a.tenant_id, a.period, a.total - coalesce(w.cost, 0) AS total, a.in_flight FROM asked a LEFT JOIN written w USING (tenant_id, period)),
       -- The periods' rows locked in one order, so two instances settling overlapping tenants wait, never deadlock.
       -- Only the groups that cost something: calls that cost nothing (cache hits) change no budget, so
       -- they neither lock a period nor wait behind a paid settlement that holds it.
       -- Each period is found by its key, one group after the other (a LATERAL subquery that locks is
       -- never flattened into a join): a plan cached while the table was small would otherwise scan
       -- every tenant's periods and hash them, on every settlement, until the table is next analyzed.
       -- fits: the period's invariant holds (spent + reserved ≤ cap), read as locked. It does not after
       -- the cap was lowered below what was already reserved: then the group's calls settle the
       -- classic way, each charged within the cap and the rest booked as an incident (its answer is null).
       locked AS MATERIALIZED (
         SELECT p.tenant_id, p.period, p.fits
           FROM (SELECT tenant_id, period FROM g WHERE total <> 0 ORDER BY tenant_id, period) k
           CROSS JOIN LATERAL (SELECT tenant_id, period, spent_nanos + reserved_nanos <= cap_nanos AS fits FROM budget_periods
                                WHERE tenant_id = k.tenant_id AND period = k.period FOR UPDATE) p),
       -- Each lease by its key, after its period is locked (the order lease takes and returns lock in too).
       -- A settlement renews the lease it writes: the instance is alive (BudgetLeases renews only the
       -- leases no statement has lately, so its renewal never waits on a busy tenant's settlements).
       -- (An update cannot reach its rows through a LATERAL subquery: the tenants' list, the key's
       -- first column, gives the plan its way into the key, where without statistics it read every
       -- lease of the instance — 10,000 with as many tenants — through the key's last column.)
       lease AS (
         UPDATE budget_leases l SET amount_nanos = l.amount_nanos - g.total, in_flight_nanos = least(g.in_flight, l.amount_nanos - g.total),
                expires_at = greatest(l.expires_at, now() + make_interval(secs => $${LEASE_TTL}::double precision / 1000))
           FROM g WHERE l.tenant_id = g.tenant_id AND l.period = g.period AND l.instance_id = $4 AND l.tenant_id = ANY($1::uuid[])
            AND EXISTS (SELECT 1 FROM locked WHERE locked.tenant_id = g.tenant_id AND locked.period = g.period AND locked.fits)
         RETURNING l.tenant_id, l.period),
       moved AS (
         UPDATE budget_periods p SET spent_nanos = p.spent_nanos + g.total, reserved_nanos = p.reserved_nanos - g.total, updated_at = now()
           FROM g WHERE p.tenant_id = g.tenant_id AND p.period = g.period
            AND EXISTS (SELECT 1 FROM locked WHERE locked.tenant_id = g.tenant_id AND locked.period = g.period)
            AND EXISTS (SELECT 1 FROM lease WHERE lease.tenant_id = g.tenant_id AND lease.period = g.period)
         RETURNING p.tenant_id, p.period, p.spent_nanos, p.cap_nanos),
       -- The groups that cost nothing: their period is read, not written (it must exist, as for any call).
       -- (By key too: OFFSET 0 keeps the subquery from being flattened into a join.)
       unchanged AS (
         SELECT p.tenant_id, p.period, p.spent_nanos, p.cap_nanos
           FROM g CROSS JOIN LATERAL (SELECT tenant_id, period, spent_nanos, cap_nanos FROM budget_periods
                                       WHERE tenant_id = g.tenant_id AND period = g.period OFFSET 0) p
          WHERE g.total = 0),
       settled AS (SELECT * FROM moved UNION ALL SELECT * FROM unchanged),
       ledger AS (
         INSERT INTO llm_calls (${LEDGER_COLUMNS.join(', ')})
         SELECT ${LEDGER_COLUMNS.map((c) => `v.${c}`).join(', ')} FROM rows v
          WHERE EXISTS (SELECT 1 FROM settled m WHERE m.tenant_id = v.tenant_id AND m.period = v.period)
            AND NOT EXISTS (SELECT 1 FROM written_ids w WHERE w.id = v.id))
       ${
         cacheRows
           ? `, cached AS (${cacheRowsSql(
               Array.from({ length: CACHE_ROWS_PARAMS }, (_, i) => `$${CACHE_ARRAYS_START + i}`),
               // (A tenant's calls of one batch are of one period, but at a month's turn; a call whose
               // group did not settle here is settled alone, and writes its answer then.)
               { where: 'EXISTS (SELECT 1 FROM settled m WHERE m.tenant_id = t.tenant_id)' },
             )})`
           : ''
       }
       SELECT tenant_id, period, spent_nanos::text AS spent, cap_nanos::text AS cap FROM settled`;
const SETTLE_LEASED_SQL = settleLeasedSql(false);
const SETTLE_LEASED_CACHING_SQL = settleLeasedSql(true);

/** Takes leases (takeLeases): $1–$7 each take's tenant, period, instance, want, need, time to live (ms) and index. */
const TAKE_LEASES_SQL = `WITH x AS (
       SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::float8[], $7::int[])
         AS x(tenant_id, period, instance_id, want, need, ttl_ms, n)),
     -- Each period locked by its key, in key order (as the settlement locks them), then read as locked.
     free AS (
       SELECT x.n, p.tenant_id, p.period, x.instance_id, x.ttl_ms,
              least(x.want, greatest(x.need, (p.cap_nanos - p.spent_nanos - p.reserved_nanos) / 4)) AS amount
         FROM (SELECT * FROM x ORDER BY tenant_id, period) x
         CROSS JOIN LATERAL (SELECT tenant_id, period, cap_nanos, spent_nanos, reserved_nanos FROM budget_periods
                              WHERE tenant_id = x.tenant_id AND period = x.period FOR UPDATE) p
        WHERE p.cap_nanos - p.spent_nanos - p.reserved_nanos >= x.need
          AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.id = x.tenant_id AND t.admission_paused)),
     per_period AS (SELECT tenant_id, period, sum(amount) AS amount FROM free GROUP BY tenant_id, period),
     held AS (
       UPDATE budget_periods p SET reserved_nanos = p.reserved_nanos + f.amount, updated_at = now()
         FROM per_period f WHERE p.tenant_id = f.tenant_id AND p.period = f.period RETURNING 1),
     lease AS (
       INSERT INTO budget_leases (tenant_id, period, instance_id, amount_nanos, expires_at)
       SELECT tenant_id, period, instance_id, amount, now() + make_interval(secs => ttl_ms / 1000) FROM free
       ON CONFLICT (tenant_id, period, instance_id)
         DO UPDATE SET amount_nanos = budget_leases.amount_nanos + EXCLUDED.amount_nanos, expires_at = EXCLUDED.expires_at
       RETURNING 1)
     SELECT n, amount::text AS taken FROM free`;

/** Returns leases (returnLeases): $1–$5 each return's tenant, period, instance, amount and index. */
const RETURN_LEASES_SQL = `WITH x AS (SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::int[]) AS x(tenant_id, period, instance_id, amount, n)),
     locked AS MATERIALIZED (
       SELECT p.tenant_id, p.period
         FROM (SELECT DISTINCT tenant_id, period FROM x ORDER BY tenant_id, period) k
         CROSS JOIN LATERAL (SELECT tenant_id, period FROM budget_periods
                              WHERE tenant_id = k.tenant_id AND period = k.period FOR UPDATE) p),
     lease AS (
       UPDATE budget_leases l SET amount_nanos = l.amount_nanos - x.amount, in_flight_nanos = least(l.in_flight_nanos, l.amount_nanos - x.amount)
         FROM x WHERE l.tenant_id = x.tenant_id AND l.period = x.period AND l.instance_id = x.instance_id AND l.amount_nanos >= x.amount
          AND l.tenant_id = ANY($1::uuid[]) -- (the way into the key, as in the settlement's lease)
          AND EXISTS (SELECT 1 FROM locked WHERE locked.tenant_id = x.tenant_id AND locked.period = x.period)
       RETURNING x.n, x.tenant_id, x.period, x.amount),
     per_period AS (SELECT tenant_id, period, sum(amount) AS amount FROM lease GROUP BY tenant_id, period),
     freed AS (
       UPDATE budget_periods p SET reserved_nanos = p.reserved_nanos - f.amount, updated_at = now()
         FROM per_period f WHERE p.tenant_id = f.tenant_id AND p.period = f.period RETURNING 1)
     SELECT n FROM lease`;

/**
 * The statements that lock a batch of tenants' budget periods, by name: each must find a period by
 * its key, never by scanning the table (test/books-plans.int-spec.ts reads their plans).
 */
export const PERIOD_LOCKING_SQL = {
  settleLeased: SETTLE_LEASED_SQL,
  settleLeasedCaching: SETTLE_LEASED_CACHING_SQL,
  takeLeases: TAKE_LEASES_SQL,
  returnLeases: RETURN_LEASES_SQL,
} as const;

/** A call to settle: its ledger row, and the answer to keep in the answer cache when it gave one to keep. */
export type SettlingCall = LedgerEntry & { period: string; cache?: CacheEntry };

/**
 * A ledger row's values after the tenant ($1), in LEDGER_COLUMNS order. Text that may come from
 * outside (a request id, a provider's error) is made well-formed: the settlement sends rows as JSON,
 * which PostgreSQL refuses with a lone surrogate in it (a 200-character cut through an emoji).
 */
function ledgerValues(e: LedgerEntry, period: string): unknown[] {
  return [
    e.id ?? randomUUID(),
    period,
    e.requestId?.toWellFormed() ?? null,
    e.callGroup,
    e.attempt,
    e.apiKeyId ?? null,
    e.essayId ?? null,
    e.purpose,
    e.tier ?? null,
    e.provider ?? null,
    e.model ?? null,
    e.cacheStatus,
    e.outcome,
    e.errorReason?.toWellFormed() ?? null,
    e.inputTokens,
    e.cachedInputTokens,
    e.outputTokens,
    e.estimatedInputTokens ?? null,
    e.usageSource,
    e.costNanos.toString(),
    e.savedNanos.toString(),
    e.compressionSavedTokens,
    e.latencyMs,
    e.streamed,
    e.batch ?? false,
    e.priceWindow ?? null,
    e.scheduleSavedNanos?.toString() ?? null,
  ];
}

/** A slice of a tenant's free budget asked for by an instance (BooksRepository.takeLease). */
interface LeaseTake {
  tenantId: string;
  period: string;
  instanceId: string;
  need: Nanos;
  want: Nanos;
  ttlMs: number;
}

/** What an instance gives back of a lease (BooksRepository.returnLease). */
interface LeaseReturn {
  tenantId: string;
  period: string;
  instanceId: string;
  amount: Nanos;
}

/**
 * Runs `run` over `items` in rounds whose keys are distinct (an item whose key is already in a
 * round goes in the next: one statement cannot update a row twice, nor see its own first update);
 * `run` answers each item of its round in order, and so does this.
 */
async function inDistinctRounds<T, R>(items: T[], key: (item: T) => string, run: (round: T[]) => Promise<R[]>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let left = items.map((item, i) => ({ item, i }));
  while (left.length) {
    const seen = new Set<string>();
    const round: typeof left = [];
    const later: typeof left = [];
    for (const x of left) {
      const k = key(x.item);
      (seen.has(k) ? later : round).push(x);
      seen.add(k);
    }
    const answers = await run(round.map((x) => x.item));
    round.forEach((x, j) => (out[x.i] = answers[j]));
    left = later;
  }
  return out;
}

/**
 * Leases renewed in one statement, at most (an instance may hold one for each of 100,000 tenants).
 * A renewal's rows stay locked until its statement ends, and a settlement or take of one of those
 * tenants waits for it: 10,000 rows took 87 ms here (16 ms to bind, 71 to run), so a few hundred
 * lock no row for more than a few milliseconds.
 */
export const RENEWALS_A_STATEMENT = 500;

/** PostgreSQL's deadlock_detected. */
const DEADLOCK = '40P01';

/**
 * Returns the reservations `which` picks (left by a process that died mid-call) to their budgets, in
 * one statement: the tenant is not charged for the platform's crash (the job's retry is its one
 * charge); each call a provider may still have answered, and billed, gets its ledger row (costing
 * the tenant nothing, outcome lost_in_flight) and an incident of kind lost_in_flight whose excess,
 * the most it could have cost, the platform absorbs. The count of periods given budget back.
 */
function lostReservationsSql(which: string): string {
  return `WITH expired AS (
         DELETE FROM budget_reservations WHERE ${which} RETURNING id, tenant_id, period, amount_nanos, call, created_at),
       totals AS (SELECT tenant_id, period, sum(amount_nanos) AS amount, count(*) AS n FROM expired GROUP BY 1, 2),
       upd AS (
         UPDATE budget_periods p SET reserved_nanos = p.reserved_nanos - t.amount, updated_at = now()
           FROM totals t WHERE p.tenant_id = t.tenant_id AND p.period = t.period RETURNING t.n),
       lost AS (
         SELECT e.id, e.tenant_id, e.period, e.amount_nanos, e.created_at, c.*
           FROM expired e
           CROSS JOIN LATERAL jsonb_to_record(e.call) AS c(request_id text, call_group uuid, attempt int, api_key_id uuid, essay_id uuid, purpose text,
                                                          tier text, provider text, model text, estimated_input_tokens int, max_output_tokens int, batch boolean)
          WHERE e.call IS NOT NULL),
       incident AS (
         INSERT INTO budget_incidents (tenant_id, id, period, kind, provider, model, call_group, estimated_input_tokens, max_output_tokens,
                                       reserved_nanos, cost_nanos, charged_nanos, excess_nanos, pauses_admission)
         SELECT tenant_id, gen_random_uuid(), period, 'lost_in_flight', provider, model, call_group, estimated_input_tokens, max_output_tokens,
                amount_nanos, amount_nanos, 0, amount_nanos, false
           FROM lost),
       ledger AS (
         INSERT INTO llm_calls (tenant_id, id, period, request_id, call_group, attempt, api_key_id, essay_id, purpose, tier, provider, model,
                                cache_status, outcome, error_reason, input_tokens, cached_input_tokens, output_tokens, estimated_input_tokens,
                                usage_source, cost_nanos, saved_nanos, compression_saved_tokens, latency_ms, streamed, batch)
         SELECT tenant_id, id, period, request_id, call_group, attempt, api_key_id, essay_id, purpose, tier, provider, model,
                'miss', 'lost_in_flight', 'the process making the call stopped before recording it; the platform absorbs what the provider billed',
                0, 0, 0, estimated_input_tokens, 'none', 0, 0, 0,
                least(extract(epoch FROM now() - created_at) * 1000, 2147483647)::int, false, coalesce(batch, false)
           FROM lost)
       SELECT coalesce(sum(n), 0)::text AS n FROM upd`;
}

/**
 * The books of each tenant: budget periods, reservations, call guards, incidents and the call
 * ledger (`llm_calls`), the only code that writes them. Money moves only here, and every movement
 * is one statement: a reservation holds budget only while it fits the cap; a settlement releases
 * the reservation, moves what is charged into the spend and writes the ledger row with that same
 * amount, so the ledger always sums to the spend.
 */
@Injectable()
export class BooksRepository {
  /**
   * Periods opened at one moment, of any tenants, in one statement (each row paired with its tenant).
   * The cap is read under a share lock: a budget change committing at that moment (its tenant row
   * updated, its periods' caps set, not yet committed) is waited for and its cap taken. Read
   * without one, the new month opened on the old cap, after the change had set every period it saw.
   * A period that exists already is neither locked nor written: an incident's settlement updates
   * its period and then its tenant (pausing admission), and an opening that locked the tenant first
   * and then waited on that period's row deadlocked with it (every new instance opens the periods it
   * has not seen yet, most of them there already).
   */
  private readonly opening = new KeyedBatcher<{ tenantId: string; period: string }, void>(async (_, asked) => {
    const items = [...new Map(asked.map((i) => [`${i.tenantId}|${i.period}`, i])).values()];
    const open = () =>
      perRowTenantQuery(
        this.ds.manager,
        items.map((i) => i.tenantId),
        `INSERT INTO budget_periods (tenant_id, period, cap_nanos)
         SELECT t.id, x.period, t.monthly_cap_nanos
           FROM unnest($1::uuid[], $2::text[]) AS x(tenant_id, period) JOIN tenants t ON t.id = x.tenant_id
          WHERE NOT EXISTS (SELECT 1 FROM budget_periods p WHERE p.tenant_id = x.tenant_id AND p.period = x.period)
          FOR SHARE OF t
         ON CONFLICT (tenant_id, period) DO NOTHING`,
        [items.map((i) => i.period)],
      );
    try {
      await open();
    } catch (err) {
      // A period another instance opened after this statement's snapshot, and an incident already
      // settling on it, can still meet the old deadlock at the turn of a month: once more, the
      // snapshot then sees the period and skips it.
      if ((err as { code?: string }).code !== DEADLOCK) throw err;
      await open();
    }
    return asked.map(() => undefined);
  }, 500);

  /** Lease takes of a moment, of any tenants, in one statement (takeLeases). */
  private readonly leasing = new KeyedBatcher<LeaseTake, Nanos>((_, takes) => this.takeLeases(takes), 500);

  /** Lease returns of a moment (an instance closing gives back every lease at once), in one statement (returnLeases). */
  private readonly returning = new KeyedBatcher<LeaseReturn, boolean>((_, gives) => this.returnLeases(gives), 500);

  constructor(private readonly ds: DataSource) {}

  /** Creates the period's row from the tenant's monthly cap, if it does not exist yet. */
  openPeriod(tenantId: string, period: string): Promise<void> {
    assertTenantId(tenantId);
    return this.opening.submit('', { tenantId, period });
  }

  /**
   * The period's cap changes with the tenant's (in the caller's transaction), and so does any later
   * one already opened: a change made across the turn of the month, the next month's row opened by
   * a call between the period being read and the commit, left the new month on the old cap.
   */
  /** Sets the cap of the period and of any later one already open; the period's cap before (null: no such period yet). */
  async setPeriodCap(tx: EntityManager, tenantId: string, period: string, cap: Nanos): Promise<Nanos | null> {
    const rows = await tenantQuery<{ period: string; before: string }>(
      tx,
      tenantId,
      `UPDATE budget_periods b SET cap_nanos = $3, updated_at = now()
         FROM budget_periods old
        WHERE b.tenant_id = $1 AND b.period >= $2 AND old.tenant_id = b.tenant_id AND old.period = b.period
       RETURNING b.period, old.cap_nanos AS before`,
      [period, cap.toString()],
    );
    const row = rows.find((r) => r.period === period);
    return row ? BigInt(row.before) : null;
  }

  async period(tenantId: string, period: string): Promise<{ cap: Nanos; spent: Nanos; reserved: Nanos } | null> {
    const [row] = await tenantQuery<{ cap: string; spent: string; reserved: string }>(
      this.ds.manager,
      tenantId,
      `SELECT cap_nanos AS cap, spent_nanos AS spent, reserved_nanos AS reserved FROM budget_periods WHERE tenant_id = $1 AND period = $2`,
      [period],
    );
    return row ? { cap: BigInt(row.cap), spent: BigInt(row.spent), reserved: BigInt(row.reserved) } : null;
  }

  /**
   * Holds `amount` against the period's cap: the conditional UPDATE and the reservation row happen
   * together or not at all, and not while the tenant's admission is paused. False: nothing held.
   */
  async reserve(tenantId: string, period: string, id: string, amount: Nanos, ttlMs: number, call?: ReservedCall): Promise<boolean> {
    const rows = await tenantQuery(
      this.ds.manager,
      tenantId,
      `WITH held AS (${holdSql()})
       INSERT INTO budget_reservations (id, tenant_id, period, amount_nanos, expires_at, call)
       SELECT $4, tenant_id, period, $3, now() + make_interval(secs => $5::double precision / 1000), $6::jsonb FROM held
       RETURNING id`,
      [period, amount.toString(), id, ttlMs, callJson(call)],
    );
    return rows.length > 0;
  }

  /**
   * reserve(), for a call paid at most once: one statement takes the call's guard (only with the
   * lease held, and only if no answer exists and no other call is in flight) and reserves.
   */
  async reserveGuarded(
    tenantId: string,
    period: string,
    r: { id: string; amount: Nanos; ttlMs: number; key: string; token: string; inFlightMs: number; lease?: Lease; call?: ReservedCall },
  ): Promise<{ reserved: boolean; stale: string | null }> {
    // The guard names the reservation its call is paid under. Taken over past its time (its process
    // died or stalled mid-call), the guard's old reservation is returned (`stale`): its worst case
    // still held the budget for minutes more, and a retry near the cap was refused for it.
    const [row] = await tenantQuery<{ id: string | null; stale: string | null }>(
      this.ds.manager,
      tenantId,
      `WITH lease AS (${leaseSql('$6', '$7')}),
       stale AS (
         SELECT reservation_id FROM call_guards
          WHERE tenant_id = $1 AND key = $8 AND state = 'in_flight' AND expires_at < now() AND batch_provider IS NULL AND reservation_id IS NOT NULL),
       guard AS (
         INSERT INTO call_guards (tenant_id, key, state, token, expires_at, essay_id, reservation_id)
         SELECT $1, $8, 'in_flight', $9, now() + make_interval(secs => $10::double precision / 1000), $12::uuid, $4::uuid WHERE EXISTS (SELECT 1 FROM lease)
         ON CONFLICT (tenant_id, key) DO UPDATE
            SET state = 'in_flight', token = EXCLUDED.token, expires_at = EXCLUDED.expires_at, created_at = now(), essay_id = EXCLUDED.essay_id,
                batch_provider = NULL, batch_id = NULL, batch_file_id = NULL, batch_line = NULL, reservation_id = EXCLUDED.reservation_id
          WHERE call_guards.state = 'in_flight' AND call_guards.expires_at < now()
         RETURNING 1),
       held AS (${holdSql('EXISTS (SELECT 1 FROM guard)')}),
       reserved AS (
         INSERT INTO budget_reservations (id, tenant_id, period, amount_nanos, expires_at, call)
         SELECT $4, tenant_id, period, $3, now() + make_interval(secs => $5::double precision / 1000), $11::jsonb FROM held
         RETURNING id)
       SELECT (SELECT id::text FROM reserved) AS id, (SELECT reservation_id::text FROM stale WHERE EXISTS (SELECT 1 FROM guard)) AS stale`,
      [period, r.amount.toString(), r.id, r.ttlMs, r.lease?.jobId ?? null, r.lease?.holder ?? null, r.key, r.token, r.inFlightMs, callJson(r.call), r.call?.essayId ?? null],
    );
    return { reserved: !!row?.id, stale: row?.stale ?? null };
  }

  /**
   * Returns one reservation left by a call whose guard was taken over past its time, as the sweep
   * returns expired ones (lost_in_flight: a ledger row costing the tenant nothing, an incident the
   * platform absorbs); nothing when it is gone already (settled, or swept).
   */
  async returnLostReservation(tenantId: string, reservationId: string): Promise<void> {
    await tenantQuery(this.ds.manager, tenantId, lostReservationsSql('tenant_id = $1 AND id = $2::uuid'), [reservationId]);
  }

  /** The essay was erased: the answers its calls' guards keep for a replay go (in the erasure's transaction). */
  /**
   * Whether a call of the essay waits in a provider batch (its guard in flight with the batch, or
   * the upload it is made from, named on it): the job was handed over by a stopping instance and its
   * retry will take the call over. Read in the caller's transaction, the guards locked.
   */
  async essayWaitsInBatch(tx: EntityManager, tenantId: string, essayId: string): Promise<boolean> {
    const rows = await tenantQuery(
      tx,
      tenantId,
      `SELECT 1 FROM call_guards WHERE tenant_id = $1 AND essay_id = $2 AND state = 'in_flight' AND expires_at > now()
          AND (batch_id IS NOT NULL OR batch_file_id IS NOT NULL) LIMIT 1 FOR UPDATE`,
      [essayId],
    );
    return rows.length > 0;
  }

  async deleteEssayGuards(tx: EntityManager, tenantId: string, essayId: string): Promise<number> {
    const rows = await tenantQuery(tx, tenantId, `DELETE FROM call_guards WHERE tenant_id = $1 AND essay_id = $2 RETURNING key`, [essayId]);
    return rows.length;
  }

  /** Guards kept for essays erased in the last `hours` (written by a call that outlived its job's lease); across tenants by design (EssayRetention's cleanup). */
  async deleteGuardsOfErased(tx: EntityManager, hours: number): Promise<number> {
    const res: unknown = await tx.query(
      `DELETE FROM call_guards g USING essays e
        WHERE e.erased_at > now() - make_interval(hours => $1) AND g.tenant_id = e.tenant_id AND g.essay_id = e.id RETURNING g.key`,
      [hours],
    );
    return rowsOf(res).length;
  }

  /** Why a guarded reservation reserved nothing: the lease, and the guard as it is now. */
  async guardState(tenantId: string, key: string, lease?: Lease): Promise<GuardState> {
    const [why] = await tenantQuery<Record<string, string | number | null>>(
      this.ds.manager,
      tenantId,
      `SELECT EXISTS (${leaseSql('$2', '$3')}) AS lease_ok,
              g.state, g.token::text AS token, greatest(0, extract(epoch FROM g.expires_at - now()) * 1000)::bigint AS left_ms,
              g.provider, g.model, g.content, g.finish_reason, g.input_tokens, g.cached_input_tokens, g.output_tokens, g.cost_nanos,
              g.batch_provider, g.batch_id, g.batch_file_id, g.batch_line, g.reservation_id::text AS reservation_id,
              (extract(epoch FROM g.created_at) * 1000)::bigint AS guarded_at
         FROM (SELECT 1) one LEFT JOIN call_guards g ON g.tenant_id = $1 AND g.key = $4`,
      [lease?.jobId ?? null, lease?.holder ?? null, key],
    );
    const answered = why.state === 'answered';
    return {
      leaseHeld: !!why.lease_ok,
      state: (why.state as GuardState['state']) ?? null,
      token: (why.token as string | null) ?? null,
      leftMs: Number(why.left_ms ?? 0),
      answer: answered
        ? {
            provider: String(why.provider),
            model: String(why.model),
            content: String(why.content ?? ''),
            finishReason: String(why.finish_reason ?? 'stop'),
            inputTokens: Number(why.input_tokens ?? 0),
            cachedInputTokens: Number(why.cached_input_tokens ?? 0),
            outputTokens: Number(why.output_tokens ?? 0),
            costNanos: BigInt(why.cost_nanos ?? 0),
          }
        : null,
      batch: why.state === 'in_flight' && why.batch_provider ? batchRef(why) : null,
    };
  }

  /**
   * What the period's leases of other instances hold that no call of theirs was promised when they
   * last wrote them (their unpromised slices, about).
   */
  async leasedElsewhere(tenantId: string, period: string, instanceId: string): Promise<Nanos> {
    const [row] = await tenantQuery<{ n: string }>(
      this.ds.manager,
      tenantId,
      `SELECT coalesce(sum(greatest(amount_nanos - in_flight_nanos, 0)), 0)::text AS n FROM budget_leases
        WHERE tenant_id = $1 AND period = $2 AND instance_id <> $3 AND expires_at > now()`,
      [period, instanceId],
    );
    return BigInt(row?.n ?? '0');
  }

  /**
   * Of these guards' keys (a call's, one for each model it may go to), one whose call is answered,
   * or in flight in a provider batch (named, or its upload): a retry takes that one over.
   */
  async guardWithCall(tenantId: string, keys: string[]): Promise<string | null> {
    const [row] = await tenantQuery<{ key: string }>(
      this.ds.manager,
      tenantId,
      `SELECT key FROM call_guards WHERE tenant_id = $1 AND key = ANY($2::text[])
          AND (state = 'answered' OR (state = 'in_flight' AND expires_at > now() AND (batch_id IS NOT NULL OR batch_file_id IS NOT NULL)))
        ORDER BY state LIMIT 1`,
      [keys],
    );
    return row?.key ?? null;
  }

  /**
   * Names a batch's upload on the guards of the calls in it (each row with its own tenant), before
   * the batch is created: a sender killed before it could name the batch itself leaves the file, by
   * which the retry finds the batch (or learns there is none). The guards and their reservations
   * are made to last `holdMs` from now at least (they were taken for the batch's collection window
   * only). Returns how many guards were marked.
   */
  markUploaded(provider: string, fileId: string, guards: BatchedGuard[], holdMs: number): Promise<number> {
    return this.nameBatch(guards, 'batch_file_id = $7', [provider, fileId], holdMs);
  }

  /**
   * Names the batch on the guards of the calls sent in it (each row with its own tenant), right after
   * the provider created it: from then on a retry of a job whose sender stopped can wait for the same
   * batch instead of paying for the call again. Returns how many guards were marked.
   */
  markBatched(provider: string, batchId: string, guards: BatchedGuard[], holdMs: number): Promise<number> {
    return this.nameBatch(guards, 'batch_id = $7', [provider, batchId], holdMs);
  }

  private async nameBatch(guards: BatchedGuard[], set: string, params: [provider: string, id: string], holdMs: number): Promise<number> {
    if (guards.length === 0) return 0;
    const rows = await perRowTenantQuery(
      this.ds.manager,
      guards.map((g) => g.tenantId),
      `WITH named AS (
         UPDATE call_guards g SET batch_provider = $6, ${set}, batch_line = v.line, reservation_id = v.reservation_id,
                expires_at = greatest(g.expires_at, now() + make_interval(secs => $8::double precision / 1000 + 5))
           FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::uuid[]) AS v(tenant_id, key, token, line, reservation_id)
          WHERE g.tenant_id = v.tenant_id AND g.key = v.key AND g.token = v.token AND g.state = 'in_flight'
          RETURNING g.tenant_id, g.reservation_id),
       held AS (
         UPDATE budget_reservations r SET expires_at = greatest(r.expires_at, now() + make_interval(secs => $8::double precision / 1000))
           FROM named n WHERE r.tenant_id = n.tenant_id AND r.id = n.reservation_id
          RETURNING 1)
       SELECT 1 FROM named`,
      [guards.map((g) => g.key), guards.map((g) => g.token), guards.map((g) => g.line), guards.map((g) => g.reservationId), ...params, holdMs],
    );
    return rows.length;
  }

  /**
   * Takes over a guarded call that waits in a provider batch (its sender stopped or died): one
   * statement gives the guard this caller's token, only while this worker holds the job's lease, the
   * guard is still the one seen (`token`) and its reservation still holds the call's budget. The
   * call is then settled by the taker, against that reservation; the sender, if it still runs,
   * settles nothing (settle's guard check). Null: not taken (someone else settled or took it).
   */
  async adoptBatched(tenantId: string, key: string, token: string, newToken: string, lease?: Lease): Promise<AdoptedCall | null> {
    const [row] = await tenantQuery<Record<string, string>>(
      this.ds.manager,
      tenantId,
      `WITH lease AS (${leaseSql('$2', '$3')}),
       taken AS (
         UPDATE call_guards g SET token = $6
          WHERE g.tenant_id = $1 AND g.key = $4 AND g.token = $5 AND g.state = 'in_flight' AND g.batch_provider IS NOT NULL AND g.expires_at > now()
            AND EXISTS (SELECT 1 FROM lease)
            AND EXISTS (SELECT 1 FROM budget_reservations r WHERE r.tenant_id = $1 AND r.id = g.reservation_id)
         RETURNING g.reservation_id, g.batch_provider, g.batch_id, g.batch_file_id, g.batch_line, g.created_at)
       SELECT t.reservation_id::text AS reservation_id, t.batch_provider, t.batch_id, t.batch_file_id, t.batch_line,
              (extract(epoch FROM t.created_at) * 1000)::bigint AS guarded_at, r.period, r.amount_nanos::text AS amount
         FROM taken t JOIN budget_reservations r ON r.tenant_id = $1 AND r.id = t.reservation_id`,
      [lease?.jobId ?? null, lease?.holder ?? null, key, token, newToken],
    );
    if (!row) return null;
    return {
      reservationId: row.reservation_id,
      period: row.period,
      amount: BigInt(row.amount),
      batch: batchRef(row),
    };
  }

  /**
   * How many calls still wait for a batch's answers besides those with `tokens` (across tenants by
   * design: a batch carries several schools' calls), by the batch's id or by its upload (`fileId`:
   * a call whose sender died before naming the batch). Its files are deleted at the provider only
   * when none does, so a call taken over later still finds its line.
   */
  async othersAwaitingBatch(batchId: string, fileId: string | null, tokens: string[]): Promise<number> {
    const [row] = (await this.ds.query(
      `SELECT count(*)::int AS n FROM call_guards
        WHERE (batch_id = $1 OR batch_file_id = $3) AND state = 'in_flight' AND expires_at > now() AND NOT (token = ANY($2::uuid[]))`,
      [batchId, tokens, fileId],
    )) as Array<{ n: number }>;
    return row?.n ?? 0;
  }

  /** Gives back a guard this process took (the budget could not cover its call). */
  async releaseGuard(tenantId: string, key: string, token: string): Promise<void> {
    await tenantQuery(this.ds.manager, tenantId, `DELETE FROM call_guards WHERE tenant_id = $1 AND key = $2 AND token = $3`, [key, token]);
  }

  /** A ledger row by itself (a cache hit, a refused call, a replay): nothing moves in the budget. */
  async record(entry: LedgerEntry & { period: string }): Promise<void> {
    const placeholders = LEDGER_COLUMNS.map((_, i) => `$${i + 1}`).join(', ');
    // (A row written by an earlier try whose answer was lost is kept as it is.)
    await tenantQuery(this.ds.manager, entry.tenantId, `INSERT INTO llm_calls (${LEDGER_COLUMNS.join(', ')}) VALUES (${placeholders}) ON CONFLICT DO NOTHING`, ledgerValues(entry, entry.period));
  }

  /**
   * Ends a reservation in one statement: the reservation is released, what is charged moves into
   * the spend and the ledger row is written with that same amount. What is charged never takes the
   * spend past the cap: it is the cost, or (a provider that billed more than the reservation's
   * bound, a call that outlived its reservation) as much of it as the cap still holds, the rest
   * recorded as an incident the platform absorbs. A guarded call's answer becomes durable here too
   * (or its guard is given back when the call failed), so a retry after a crash reuses what was
   * paid for. Runs in `m` (the caller's transaction when the incident also pauses the tenant).
   */
  async settle(
    m: EntityManager,
    s: {
      reservationId: string;
      /** batched: the call waited in a provider batch, where another process may have taken it over */
      guard?: { key: string; token: string; batched?: boolean };
      cost: Nanos;
      entry: LedgerEntry & { tenantId: string; period: string };
      answer?: GuardedAnswer;
      incident?: TokenIncident;
      /** the answer to keep in the answer cache (saving what was charged), written when the call settles */
      cache?: CacheEntry;
    },
  ): Promise<Settlement | null> {
    const { tenantId } = s.entry;
    const values = ledgerValues({ ...s.entry, costNanos: s.cost }, s.entry.period);
    const next = sqlParams(LEDGER_COLUMNS.length + 1, values);
    const col = (name: (typeof LEDGER_COLUMNS)[number]) => `$${LEDGER_COLUMNS.indexOf(name) + 1}`;
    const cost = `${col('cost_nanos')}::bigint`;
    const period = col('period');
    const rowValues = LEDGER_COLUMNS.map((c) => (c === 'cost_nanos' ? '(SELECT charged FROM amount)' : col(c))).join(', ');

    // A guarded call taken over by a job's retry (a batched one adopted, a real-time one whose guard
    // the retry took past its time) is settled by the taker only: the guard's row is locked first,
    // and a token not ours means nothing here is released, charged or written (the sender outlived
    // its lease; the retry's call is the one charge, this one's reservation returned as lost).
    const guardLock = s.guard ? `guard_now AS (SELECT token FROM call_guards WHERE tenant_id = $1 AND key = ${next(s.guard.key)} FOR UPDATE),` : '';
    const ours = s.guard ? ` AND NOT EXISTS (SELECT 1 FROM guard_now WHERE token <> ${next(s.guard.token)}::uuid)` : '';
    let guardSql = '';
    if (s.guard && s.answer) {
      const a = s.answer;
      guardSql = `, answered AS (
         UPDATE call_guards SET state = 'answered', expires_at = now() + make_interval(secs => ${next(GUARD_RETENTION_MS)}::double precision / 1000),
                provider = ${next(a.provider)}, model = ${next(a.model)}, content = ${next(a.content)}, finish_reason = ${next(a.finishReason)},
                input_tokens = ${next(a.inputTokens)}, cached_input_tokens = ${next(a.cachedInputTokens)}, output_tokens = ${next(a.outputTokens)},
                cost_nanos = (SELECT charged FROM amount)
          WHERE tenant_id = $1 AND key = ${next(s.guard.key)} AND token = ${next(s.guard.token)} RETURNING 1)`;
    } else if (s.guard) {
      guardSql = `, given_back AS (DELETE FROM call_guards WHERE tenant_id = $1 AND key = ${next(s.guard.key)} AND token = ${next(s.guard.token)} RETURNING 1)`;
    }
    const i = s.incident;
    const incidentSql = `, incident AS (
         INSERT INTO budget_incidents (tenant_id, id, period, kind, provider, model, call_group, estimated_input_tokens, reported_input_tokens,
                                       max_output_tokens, reported_output_tokens, reserved_nanos, cost_nanos, charged_nanos, excess_nanos, pauses_admission)
         SELECT $1, ${next(randomUUID())}, ${period}, ${next(i ? 'tokens_over_bound' : 'over_reservation')},
                ${col('provider')}, ${col('model')}, ${col('call_group')}::uuid, ${next(i?.estimatedInputTokens ?? null)}::int, ${next(i?.reportedInputTokens ?? null)}::int,
                ${next(i?.maxOutputTokens ?? null)}::int, ${next(i?.reportedOutputTokens ?? null)}::int,
                (SELECT reserved FROM own), ${cost}, a.charged, ${cost} - a.charged, ${next(!!i)}::boolean
           FROM amount a WHERE (${next(!!i)}::boolean OR ${cost} > a.charged) AND NOT EXISTS (SELECT 1 FROM prior)${ours}
         RETURNING 1)`;
    const cacheSql = s.cache
      ? `, cached AS (${cacheRowsSql(cacheRowsParams([{ ...s.cache, tenantId }]).map((a) => next(a)), { cost: '(SELECT charged FROM amount)', where: 'EXISTS (SELECT 1 FROM moved)' })})`
      : '';
    const [after] = await tenantQuery<{ spent: string; cap: string; charged: string; incident: number }>(
      m,
      tenantId,
      // prior: this settlement's own ledger row, already written (a retry after the first attempt
      // committed and its answer was lost): then nothing is released, charged or recorded again, and
      // what the first attempt charged is the answer. (A first attempt still running is waited for
      // at the ledger row's key, and the retry fails with a key conflict; the caller's next try sees it.)
      `WITH ${guardLock} prior AS (SELECT cost_nanos FROM llm_calls WHERE ${next(s.entry.retried === true)}::boolean AND tenant_id = $1 AND id = ${col('id')}::uuid),
       released AS (
         DELETE FROM budget_reservations WHERE tenant_id = $1 AND id = ${next(s.reservationId)} AND NOT EXISTS (SELECT 1 FROM prior)${ours} RETURNING amount_nanos),
       own AS MATERIALIZED (SELECT coalesce(sum(amount_nanos), 0) AS reserved FROM released),
       -- The period read as locked (after the reservation is released, the order the sweep locks in;
       -- the lock an update takes, no stronger): read unlocked, it was the statement's snapshot, and a
       -- cap lowered by a transaction that committed while this one waited was not seen (the call was
       -- charged against the old cap, spend left above the new one).
       period_now AS MATERIALIZED (
         SELECT p.cap_nanos, p.spent_nanos, p.reserved_nanos FROM budget_periods p
          WHERE p.tenant_id = $1 AND p.period = ${period} AND (SELECT reserved FROM own) IS NOT NULL FOR NO KEY UPDATE),
       -- A cost within the call's own reservation is charged within what the cap has left; one past it
       -- takes no room other calls' reservations hold (as much as its own reservation at least).
       -- (The two differ only once a cap was lowered below what is reserved: others' reservations
       -- then no longer under-charge a call the cap has room for.)
       amount AS (
         SELECT least(${cost},
                      greatest(least(o.reserved, greatest(0, p.cap_nanos - p.spent_nanos)),
                               p.cap_nanos - p.spent_nanos - (p.reserved_nanos - o.reserved),
                               0)) AS charged
           FROM period_now p CROSS JOIN own o),
       moved AS (
         UPDATE budget_periods
            SET reserved_nanos = reserved_nanos - (SELECT reserved FROM own),
                spent_nanos = spent_nanos + (SELECT charged FROM amount), updated_at = now()
          WHERE tenant_id = $1 AND period = ${period} AND NOT EXISTS (SELECT 1 FROM prior)${ours} RETURNING spent_nanos, cap_nanos),
       ledger AS (
         INSERT INTO llm_calls (${LEDGER_COLUMNS.join(', ')}) SELECT ${rowValues} FROM moved)
       ${guardSql}
       ${incidentSql}
       ${cacheSql}
       SELECT spent_nanos AS spent, cap_nanos AS cap, (SELECT charged FROM amount)::text AS charged, (SELECT count(*) FROM incident)::int AS incident FROM moved
       UNION ALL
       SELECT p.spent_nanos, p.cap_nanos, prior.cost_nanos::text, 0 FROM prior JOIN budget_periods p ON p.tenant_id = $1 AND p.period = ${period}`,
      next.values(),
    );
    return after ? { charged: BigInt(after.charged), spent: BigInt(after.spent), cap: BigInt(after.cap), incident: after.incident > 0 } : null;
  }

  /**
   * Takes a slice of the period's free budget as this instance's lease (budget_leases), counted in
   * reserved_nanos, in one statement: at least `need` (else nothing), at most `want`, and at most a
   * quarter of what is free beyond `need`, so instances share what is left; not while the tenant's
   * admission is paused. Returns what was taken (0n: nothing).
   */
  takeLease(tenantId: string, period: string, instanceId: string, need: Nanos, want: Nanos, ttlMs: number): Promise<Nanos> {
    assertTenantId(tenantId);
    return this.leasing.submit('', { tenantId, period, instanceId, need, want, ttlMs });
  }

  /**
   * Lease takes of a moment, of any tenants, in one statement (see takeLease; each row paired with
   * its tenant, the periods locked in key order as settlements lock them). A period asked for twice
   * goes in the next statement: two takes in one would each see the same free budget. (The update
   * and the insert run whether or not the final select reads them, as PostgreSQL runs every
   * data-modifying WITH.)
   */
  private takeLeases(asked: LeaseTake[]): Promise<Nanos[]> {
    // One take per period a statement: two would each see the same free budget.
    return inDistinctRounds(asked, (t) => `${t.tenantId}|${t.period}`, async (now) => {
      const rows = await perRowTenantQuery<{ n: number; taken: string }>(
        this.ds.manager,
        now.map((t) => t.tenantId),
        TAKE_LEASES_SQL,
        [now.map((t) => t.period), now.map((t) => t.instanceId), now.map((t) => t.want.toString()), now.map((t) => t.need.toString()), now.map((t) => t.ttlMs), now.map((_, j) => j)],
      );
      const taken = new Array<Nanos>(now.length).fill(0n);
      for (const r of rows) taken[r.n] = BigInt(r.taken);
      return taken;
    });
  }

  /**
   * Gives `amount` of this instance's lease back to the period's free budget (false: the lease did
   * not hold it). The returns of a moment, of any tenants, go in one statement (returnLeases).
   */
  returnLease(tenantId: string, period: string, instanceId: string, amount: Nanos): Promise<boolean> {
    assertTenantId(tenantId);
    if (amount <= 0n) return Promise.resolve(true);
    return this.returning.submit('', { tenantId, period, instanceId, amount });
  }

  /**
   * Lease returns in one statement, each row with its tenant: the periods locked in key order
   * first (as settlements and takes lock them), then each lease by its key. A lease returned twice
   * in one moment goes in the next statement (one update a row a statement).
   */
  private returnLeases(asked: LeaseReturn[]): Promise<boolean[]> {
    return inDistinctRounds(asked, (g) => `${g.tenantId}|${g.period}|${g.instanceId}`, async (now) => {
      const rows = await perRowTenantQuery<{ n: number }>(
        this.ds.manager,
        now.map((g) => g.tenantId),
        RETURN_LEASES_SQL,
        [now.map((g) => g.period), now.map((g) => g.instanceId), now.map((g) => g.amount.toString()), now.map((_, j) => j)],
      );
      const held = new Array<boolean>(now.length).fill(false);
      for (const r of rows) held[r.n] = true;
      return held;
    });
  }

  /**
   * Settles calls admitted on this instance's leases, of any number of tenants and periods, in one
   * statement: for each (tenant, period) group, what its calls cost leaves the instance's lease and
   * moves into that period's spend, and its ledger rows are written. Every row is matched with its
   * own tenant (perRowTenantQuery). A group whose lease row is gone (swept while this instance was
   * stalled) moves nothing and writes nothing: its answer is null, and the caller settles its calls
   * another way. Answers are in the order of `groups` (each group's tenant and period once).
   */
  async settleLeased(
    instanceId: string,
    ttlMs: number,
    groups: Array<{ tenantId: string; period: string; calls: SettlingCall[]; inFlight?: Nanos }>,
  ): Promise<Array<{ spent: Nanos; cap: Nanos } | null>> {
    const totals = groups.map((g) => g.calls.reduce((a, c) => a + c.costNanos, 0n));
    // The ledger rows as one JSON parameter ($6): the statement's text is the same for any number
    // of calls (one entry in pg_stat_statements), with 6 parameters (18 with answers) however many rows.
    const rows: unknown[][] = [];
    for (const g of groups) for (const c of g.calls) rows.push([g.tenantId, ...ledgerValues(c, g.period), c.retried === true]);
    const cacheRows = groups.flatMap((g) => g.calls.flatMap((c) => (c.cache ? [{ ...c.cache, tenantId: g.tenantId }] : [])));
    const after = await perRowTenantQuery<{ tenant_id: string; period: string; spent: string; cap: string }>(
      this.ds.manager,
      groups.map((g) => g.tenantId),
      cacheRows.length ? SETTLE_LEASED_CACHING_SQL : SETTLE_LEASED_SQL,
      [groups.map((g) => g.period), totals.map(String), instanceId, ttlMs, JSON.stringify(rows), groups.map((g) => String(g.inFlight ?? 0n)), ...(cacheRows.length ? cacheRowsParams(cacheRows) : [])],
      // Planning it took longer than running it (pg_stat_statements at 300 calls/s: 0.95 ms against 0.7 ms).
      { preparedAs: cacheRows.length ? 'inkstone_settle_leased_caching' : 'inkstone_settle_leased' },
    );
    const byKey = new Map(after.map((r) => [`${r.tenant_id}:${r.period}`, { spent: BigInt(r.spent), cap: BigInt(r.cap) }]));
    return groups.map((g) => byKey.get(`${g.tenantId}:${g.period}`) ?? null);
  }

  /**
   * Moves `amount` of this instance's lease into a reservation (an incident, a guarded answer or a
   * cost beyond the admitted bound settles the classic way); reserved_nanos does not change.
   * The period is locked first, then the lease, in the order every statement that writes leases
   * takes them: updating the lease first and then inserting the reservation (whose foreign key
   * waits for the period) deadlocked with a settlement of the same tenant on this instance.
   * Sent again after a try whose answer was lost (it committed), it finds the reservation that try
   * made and moves nothing twice (the second move failed on the reservation's key, every time).
   * Answers 'moved', 'found' (an earlier try moved it) or null (the lease does not hold `amount`).
   * `entryId`, the call's ledger row: when it is written, an earlier try moved the worst case and
   * settled it (its answer lost): 'found', nothing moved again (the reservation is gone by then).
   */
  async leaseToReservation(tenantId: string, period: string, instanceId: string, reservationId: string, amount: Nanos, ttlMs: number, entryId?: string): Promise<'moved' | 'found' | null> {
    const rows = await tenantQuery(
      this.ds.manager,
      tenantId,
      `WITH locked AS MATERIALIZED (SELECT 1 FROM budget_periods WHERE tenant_id = $1 AND period = $2 FOR UPDATE),
       already AS MATERIALIZED (
         SELECT $5::uuid AS id WHERE EXISTS (SELECT 1 FROM locked)
            AND (EXISTS (SELECT 1 FROM budget_reservations WHERE tenant_id = $1 AND id = $5::uuid)
                 OR ($7::uuid IS NOT NULL AND EXISTS (SELECT 1 FROM llm_calls WHERE tenant_id = $1 AND id = $7::uuid)))),
       lease AS (
         UPDATE budget_leases SET amount_nanos = amount_nanos - $4::bigint, in_flight_nanos = least(greatest(in_flight_nanos - $4::bigint, 0), amount_nanos - $4::bigint)
          WHERE tenant_id = $1 AND period = $2 AND instance_id = $3 AND amount_nanos >= $4::bigint AND EXISTS (SELECT 1 FROM locked) AND NOT EXISTS (SELECT 1 FROM already)
          RETURNING 1),
       moved AS (
         INSERT INTO budget_reservations (id, tenant_id, period, amount_nanos, expires_at)
         SELECT $5::uuid, $1, $2, $4::bigint, now() + make_interval(secs => $6::double precision / 1000) FROM lease
         RETURNING id)
       SELECT 'moved' AS how FROM moved UNION ALL SELECT 'found' FROM already`,
      [period, instanceId, amount.toString(), reservationId, ttlMs, entryId ?? null],
    );
    return (rows[0] as { how: 'moved' | 'found' } | undefined)?.how ?? null;
  }

  /**
   * This instance is alive: the leases it holds live on (each named by its key, each row with its
   * tenant), RENEWALS_A_STATEMENT a statement, `pauseMs` between statements; each with what it
   * still promises to calls in flight (`inFlight`; absent: as last written).
   */
  async renewLeases(instanceId: string, ttlMs: number, leases: Array<{ tenantId: string; period: string; inFlight?: Nanos }>, pauseMs = 0): Promise<void> {
    for (let i = 0; i < leases.length; i += RENEWALS_A_STATEMENT) {
      if (i > 0 && pauseMs > 0) await sleep(pauseMs);
      const some = leases.slice(i, i + RENEWALS_A_STATEMENT);
      await perRowTenantQuery(
        this.ds.manager,
        some.map((l) => l.tenantId),
        `UPDATE budget_leases l SET expires_at = now() + make_interval(secs => $4::double precision / 1000),
                in_flight_nanos = least(coalesce(k.in_flight, l.in_flight_nanos), l.amount_nanos)
           FROM unnest($1::uuid[], $2::text[], $5::bigint[]) AS k(tenant_id, period, in_flight)
          WHERE l.tenant_id = k.tenant_id AND l.period = k.period AND l.instance_id = $3`,
        [some.map((l) => l.period), instanceId, ttlMs, some.map((l) => (l.inFlight === undefined ? null : String(l.inFlight)))],
      );
    }
  }

  /**
   * Returns expired reservations, left by a process that died mid-call, to their budgets
   * (lostReservationsSql: the tenant is not charged for the platform's crash; each call a provider
   * may still have billed is a lost_in_flight ledger row and incident). Sweeps old guards.
   */
  async sweep(): Promise<number> {
    // Maintenance across tenants: it touches only reservations past their expiry.
    const rows: Array<{ n: string }> = await this.ds.query(lostReservationsSql('expires_at < now()'));
    // Leases of instances that stopped renewing them (dead): what they held goes back. Their periods
    // are locked first, in key order, as settlements, takes and returns lock them (a stalled instance
    // may be settling on the lease being swept: no lock cycle between them).
    const leases: Array<{ n: string }> = await this.ds.query(
      `WITH locked AS MATERIALIZED (
         SELECT p.tenant_id, p.period FROM budget_periods p
          WHERE (p.tenant_id, p.period) IN (SELECT tenant_id, period FROM budget_leases WHERE expires_at < now())
          ORDER BY p.tenant_id, p.period FOR UPDATE OF p),
       expired AS (
         DELETE FROM budget_leases l WHERE l.expires_at < now()
            AND EXISTS (SELECT 1 FROM locked WHERE locked.tenant_id = l.tenant_id AND locked.period = l.period)
         RETURNING l.tenant_id, l.period, l.amount_nanos, least(l.in_flight_nanos, l.amount_nanos) AS in_flight),
       totals AS (SELECT tenant_id, period, sum(amount_nanos) AS amount, count(*) FILTER (WHERE amount_nanos > 0) AS n FROM expired GROUP BY 1, 2),
       upd AS (
         UPDATE budget_periods p SET reserved_nanos = p.reserved_nanos - t.amount, updated_at = now()
           FROM totals t WHERE p.tenant_id = t.tenant_id AND p.period = t.period RETURNING t.n),
       -- What the dead instance last wrote as promised to calls in flight on the lease: calls a
       -- provider may have answered and billed with no row anywhere. One incident a lease (not a
       -- call: the lease knows no calls), absorbed by the platform, the tenant not charged.
       lost AS (
         INSERT INTO budget_incidents (tenant_id, id, period, kind, reserved_nanos, cost_nanos, charged_nanos, excess_nanos, pauses_admission)
         SELECT tenant_id, gen_random_uuid(), period, 'lost_in_flight', in_flight, in_flight, 0, in_flight, false
           FROM expired WHERE in_flight > 0)
       SELECT coalesce(sum(n), 0)::text AS n FROM upd`,
    );
    // Guards past their time: answers kept for retries, and calls that never came back.
    await this.ds.query(`DELETE FROM call_guards WHERE expires_at < now() - interval '1 minute'`);
    return Number(rows[0]?.n ?? 0) + Number(leases[0]?.n ?? 0);
  }

  /** The tenant's incidents, newest first: every open one and the last closed ones. */
  async incidents(tenantId: string): Promise<Array<Record<string, unknown>>> {
    return tenantQuery<Record<string, unknown>>(
      this.ds.manager,
      tenantId,
      `(SELECT * FROM budget_incidents WHERE tenant_id = $1 AND acknowledged_at IS NULL ORDER BY created_at DESC LIMIT 100)
       UNION ALL
       (SELECT * FROM budget_incidents WHERE tenant_id = $1 AND acknowledged_at IS NOT NULL ORDER BY created_at DESC LIMIT 10)
       ORDER BY created_at DESC`,
      [],
    );
  }

  /** Marks an incident acknowledged (the first acknowledgement stays); null when it is not this tenant's. */
  async acknowledge(tx: EntityManager, tenantId: string, incidentId: string, keyId: string): Promise<Record<string, unknown> | null> {
    const [row] = await tenantQuery<Record<string, unknown>>(
      tx,
      tenantId,
      `UPDATE budget_incidents SET acknowledged_at = coalesce(acknowledged_at, now()), acknowledged_by = coalesce(acknowledged_by, $3)
        WHERE tenant_id = $1 AND id = $2 RETURNING *`,
      [incidentId, keyId],
    );
    return row ?? null;
  }

  /** Does an unacknowledged incident still pause the tenant's admission? */
  async anyPausing(tx: EntityManager, tenantId: string): Promise<boolean> {
    const rows = await tenantQuery(tx, tenantId, `SELECT 1 FROM budget_incidents WHERE tenant_id = $1 AND pauses_admission AND acknowledged_at IS NULL LIMIT 1`, []);
    return rows.length > 0;
  }
}

/** The conditional hold on the period ($1 tenant, $2 period, $3 amount): within the cap, and not while admission is paused. */
function holdSql(andAlso = 'true'): string {
  return `UPDATE budget_periods SET reserved_nanos = reserved_nanos + $3, updated_at = now()
          WHERE tenant_id = $1 AND period = $2 AND spent_nanos + reserved_nanos + $3 <= cap_nanos AND ${andAlso}
            AND NOT EXISTS (SELECT 1 FROM tenants WHERE id = $1 AND admission_paused)
          RETURNING tenant_id, period`;
}

/** One row when the call may start: no lease asked for, or the job's lease held by its holder. */
function leaseSql(jobId: string, holder: string): string {
  return `SELECT 1 WHERE ${jobId}::uuid IS NULL
          UNION ALL
          SELECT 1 FROM jobs WHERE tenant_id = $1 AND id = ${jobId} AND locked_by = ${holder} AND status = 'running' AND locked_until > now()`;
}

/** A guard's batch columns, as read by guardState and adoptBatched. */
function batchRef(row: Record<string, string | number | null>): BatchRef {
  return {
    provider: String(row.batch_provider),
    batchId: row.batch_id === null ? null : String(row.batch_id),
    fileId: row.batch_file_id === null ? null : String(row.batch_file_id),
    line: String(row.batch_line),
    reservationId: String(row.reservation_id),
    guardedAt: Number(row.guarded_at),
  };
}
