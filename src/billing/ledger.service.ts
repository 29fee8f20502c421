import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { formatCny, Nanos } from '../common/money';
import { tenantQuery } from '../db/tenant-scope';
import { zonedTime } from '../common/time-zone';

/** What a model call was for: chat, a grading, a paid deep review, a re-grading on escalation, a shadow grading. */
export type CallPurpose = 'chat' | 'grading' | 'deep_review' | 'escalation' | 'shadow';
/** replay: an answer paid for by an earlier run of the same job, used again at no cost */
export type CacheStatus = 'hit' | 'miss' | 'bypass' | 'replay';

/** One row of the call ledger: one attempt at a model call, or one answer served from cache. */
export interface LedgerEntry {
  /**
   * The ledger row's id, set when the entry is made: a settlement retried after its first attempt
   * committed (its answer lost) finds its row and charges nothing twice. Absent: a new id each write.
   */
  id?: string;
  /**
   * Sent again after an attempt that failed: its row may have been written by that attempt (the
   * answer lost), so the settlement looks for it first. Only retries look: the lookup is not free.
   */
  retried?: boolean;
  tenantId: string;
  period?: string;
  requestId?: string;
  callGroup: string;
  attempt: number;
  apiKeyId?: string;
  essayId?: string;
  purpose: CallPurpose;
  tier?: string;
  provider?: string;
  model?: string;
  cacheStatus: CacheStatus;
  outcome: string;
  errorReason?: string;
  inputTokens: number;
  cachedInputTokens: number;
  outputTokens: number;
  estimatedInputTokens?: number;
  usageSource: 'provider' | 'estimated' | 'none';
  costNanos: Nanos;
  savedNanos: Nanos;
  compressionSavedTokens: number;
  latencyMs: number;
  streamed: boolean;
  /** went through the provider's Batch API */
  batch?: boolean;
  /** the time-of-day price window the call was priced in; unset for the base or batch price */
  priceWindow?: string | null;
  /** scheduled work: what the call cost less than at the real-time price when it was submitted */
  scheduleSavedNanos?: Nanos;
}

export const USAGE_GROUPS = ['day', 'model', 'provider', 'tier', 'teacher'] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];

/** How each grouping reads the ledger's rows (raw) and its daily roll-up (ledger_daily: '' and the nil uuid for none). */
const GROUP_SQL: Record<UsageGroup, { raw: string; daily: string }> = {
  day: { raw: `to_char(created_at AT TIME ZONE $4, 'YYYY-MM-DD')`, daily: `to_char(day, 'YYYY-MM-DD')` },
  model: { raw: `coalesce(provider || ':' || model, 'none')`, daily: `coalesce(nullif(provider, '') || ':' || nullif(model, ''), 'none')` },
  provider: { raw: `coalesce(provider, 'none')`, daily: `coalesce(nullif(provider, ''), 'none')` },
  tier: { raw: `coalesce(tier, 'none')`, daily: `coalesce(nullif(tier, ''), 'none')` },
  teacher: { raw: `coalesce(api_key_id::text, 'none')`, daily: `coalesce(nullif(api_key_id, '00000000-0000-0000-0000-000000000000')::text, 'none')` },
};

const GRADING = `purpose IN ('grading', 'deep_review')`;
const GRADING_COST = `purpose IN ('grading', 'deep_review', 'escalation', 'shadow')`;

/**
 * A usage group's figures over rows that each count `n` calls: `count(*)` over the ledger, `calls`
 * over its roll-up. A grading is its one answered call (a call group has one ok row).
 */
const usageColumns = (n: string) => `sum(${n}) AS calls,
              coalesce(sum(${n}) FILTER (WHERE cache_status = 'hit'), 0) AS cache_hits,
              coalesce(sum(${n}) FILTER (WHERE outcome NOT IN ('ok', 'replayed')), 0) AS failures,
              coalesce(sum(${n}) FILTER (WHERE ${GRADING} AND outcome = 'ok'), 0) AS gradings,
              coalesce(sum(cost_nanos) FILTER (WHERE ${GRADING_COST}), 0) AS grading_cost,
              ${TOTALS_SQL}`;

/** Token and money totals over a set of ledger rows, as SQL columns and as the API shows them. */
const TOTALS_SQL = `coalesce(sum(input_tokens), 0) AS input_tokens,
              coalesce(sum(cached_input_tokens), 0) AS cached_input_tokens,
              coalesce(sum(output_tokens), 0) AS output_tokens,
              coalesce(sum(cost_nanos), 0) AS cost,
              coalesce(sum(saved_nanos), 0) AS saved`;

function totalsOf(r: Record<string, string>) {
  return {
    inputTokens: Number(r.input_tokens),
    cachedInputTokens: Number(r.cached_input_tokens),
    outputTokens: Number(r.output_tokens),
    cost: formatCny(BigInt(r.cost)),
    savedByCache: formatCny(BigInt(r.saved)),
  };
}

export interface UsageRow {
  key: string;
  calls: number;
  cacheHits: number;
  failures: number;
  /** gradings finished by a model call (standard gradings and deep reviews, one per call group) */
  gradings: number;
  /** the cost of the calls spent on grading (gradings, deep reviews, escalations, shadow gradings) per grading; null without gradings */
  costPerGrading: string | null;
  inputTokens: number;
  cachedInputTokens: number;
  outputTokens: number;
  cost: string;
  savedByCache: string;
}

/** GET /v1/stats: totals from the ledger for a month (period) or all time (period null). */
export interface LedgerStats {
  period: string | null;
  totalCalls: number;
  cacheHits: number;
  /** calls sent to a provider: not cache hits, answers replayed from an earlier run of the job, or calls the budget refused */
  providerCalls: number;
  /** calls recorded with an outcome other than ok or replayed (see outcomes): refused by the budget, failed or cut short at the provider, fallen back from, lost in flight */
  failedCalls: number;
  cacheHitRate: number;
  totalTokens: number;
  inputTokens: number;
  cachedInputTokens: number;
  outputTokens: number;
  cost: string;
  savedByCache: string;
  compressionSavedTokens: number;
  averageLatencyMs: number;
  /** calls by outcome (ok and each kind of failure) */
  outcomes: Record<string, number>;
}

/** Where usage reads the day `to` falls in (d2): its roll-up rows, or the ledger's rows in [t2, to). */
type LastDay = 'rolled up' | 'from the ledger';

/**
 * Usage in one statement, $2–$8: [from, t1) from the ledger, the roll-up's days from d1 ($5) to
 * before d2 ($6), and the last day d2 either from the roll-up (while `to`, $8, is ahead of the
 * clock; the `open` column says whether it still was, read once after the statement's snapshot) or
 * from the ledger in [t2, to) ($7, $8). Two shapes, not one with both branches behind a flag: the
 * planner would cost the branch that does not run (a busy day's million rows) and compile it.
 */
function usageSql(g: { raw: string; daily: string }, lastDay: LastDay): string {
  const rolled = lastDay === 'rolled up';
  return `WITH o AS MATERIALIZED (SELECT ${rolled ? '$8::timestamptz > clock_timestamp()' : 'NULL::boolean'} AS open),
       parts AS (
         SELECT ${g.daily} AS key, ${usageColumns('calls')}
           FROM ledger_daily
          WHERE tenant_id = $1 AND day >= $5::date AND ${rolled ? 'day <= $6::date' : 'day < $6::date'}
          GROUP BY 1
         UNION ALL
         SELECT ${g.raw} AS key, ${usageColumns('1')}
           FROM llm_calls
          WHERE tenant_id = $1 AND ((created_at >= $2 AND created_at < $3) ${rolled ? '' : 'OR (created_at >= $7 AND created_at < $8)'})
          GROUP BY 1)
       SELECT key, sum(calls) AS calls, sum(cache_hits) AS cache_hits, sum(failures) AS failures, sum(gradings) AS gradings,
              sum(grading_cost) AS grading_cost, sum(input_tokens) AS input_tokens, sum(cached_input_tokens) AS cached_input_tokens,
              sum(output_tokens) AS output_tokens, sum(cost) AS cost, sum(saved) AS saved, (SELECT open FROM o) AS open
         FROM parts
        WHERE $4::text IS NOT NULL AND $7::timestamptz IS NOT NULL AND $8::timestamptz IS NOT NULL -- typed whether used or not
        GROUP BY key ORDER BY key`;
}

/** The call ledger, read: usage by group and totals. Its rows are written by BooksRepository only. */
@Injectable()
export class LedgerService {
  constructor(private readonly ds: DataSource) {}

  /**
   * Usage in [from, to) by group: whole days of the tenant's zone from the daily roll-up, the part
   * days at either end from the ledger's own rows, in one statement. When `to` is still ahead of the
   * database's clock (the default "until now"), the last day is read from the roll-up too: the
   * roll-up is written by the statements that write the ledger, and every row a statement can see
   * was written before it read the clock, so that day's roll-up rows hold exactly its rows in
   * [t2, to). A busy tenant's today then costs a few roll-up rows, not a read of all its calls.
   */
  async usage(tenantId: string, from: Date, to: Date, groupBy: UsageGroup, timeZone: string): Promise<UsageRow[]> {
    // The whole days inside [from, to) in the tenant's zone (no table is read): d1 is the first
    // midnight at or after from (t1), d2 the day to falls in, starting at t2.
    const [days]: Array<{ d1: string; d2: string; open: boolean }> = await this.ds.query(
      `WITH local AS (SELECT $1::timestamptz AT TIME ZONE $3 AS f, $2::timestamptz AT TIME ZONE $3 AS t),
            days AS (SELECT CASE WHEN f = date_trunc('day', f) THEN f::date ELSE f::date + 1 END AS d1, t::date AS d2 FROM local)
       SELECT to_char(d1, 'YYYY-MM-DD') AS d1, to_char(d2, 'YYYY-MM-DD') AS d2, $2::timestamptz > clock_timestamp() AS open
         FROM days`,
      [from, to, timeZone],
    );
    // Where each day starts, as the roll-up's days do: at its first instant (zonedTime). PostgreSQL's
    // `day::timestamp AT TIME ZONE` takes the later of a midnight that comes twice (Havana's jump
    // back): the hour between was read twice, from the ledger and in the day's roll-up row.
    const start = (day: string) => zonedTime(Number(day.slice(0, 4)), Number(day.slice(5, 7)), Number(day.slice(8, 10)), timeZone);
    const b = { ...days, t1: start(days.d1), t2: start(days.d2) };
    if (b.t1 < from) {
      // `from` at the second of two midnights: its day is a part day, from the ledger.
      b.d1 = new Date(Date.parse(`${b.d1}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
      b.t1 = start(b.d1);
    }
    const g = GROUP_SQL[groupBy];
    // from and to inside one day, from not at its midnight: no day of the roll-up fits, all of [from, to) is raw.
    const params = b.d1 <= b.d2 ? [from, b.t1, timeZone, b.d1, b.d2, b.t2, to] : [from, to, timeZone, '1970-01-01', '1970-01-01', to, to];
    const read = (lastDay: LastDay) => tenantQuery<Record<string, string>>(this.ds.manager, tenantId, usageSql(g, lastDay), params);
    let rows = b.open && b.d1 <= b.d2 ? await read('rolled up') : await read('from the ledger');
    // The clock passed `to` between the two statements: the last day from the ledger after all.
    if (rows.length > 0 && (rows[0] as Record<string, unknown>).open === false) rows = await read('from the ledger');
    return rows.map((r) => ({
      key: r.key,
      calls: Number(r.calls),
      cacheHits: Number(r.cache_hits),
      failures: Number(r.failures),
      gradings: Number(r.gradings),
      costPerGrading: Number(r.gradings) > 0 ? formatCny(BigInt(r.grading_cost) / BigInt(r.gradings)) : null,
      ...totalsOf(r),
    }));
  }

  /** Totals for a period (or all time), from the daily roll-up. */
  async stats(tenantId: string, period?: string): Promise<LedgerStats> {
    const [r] = await tenantQuery<Record<string, string>>(
      this.ds.manager,
      tenantId,
      `SELECT coalesce(sum(calls), 0) AS total_calls,
              coalesce(sum(calls) FILTER (WHERE cache_status = 'hit'), 0) AS cache_hits,
              -- (A replay is an answer paid for by an earlier run of the job, used again: neither a
              -- provider call nor a failure. A call the budget refused was never sent: a failure, not
              -- a provider call.)
              coalesce(sum(calls) FILTER (WHERE cache_status NOT IN ('hit', 'replay') AND outcome <> 'budget_exhausted'), 0) AS provider_calls,
              coalesce(sum(calls) FILTER (WHERE outcome NOT IN ('ok', 'replayed')), 0) AS failed_calls,
              coalesce(sum(input_tokens + output_tokens), 0) AS total_tokens,
              ${TOTALS_SQL},
              coalesce(sum(compression_saved_tokens), 0) AS compression_saved_tokens,
              coalesce(sum(latency_ms) FILTER (WHERE cache_status <> 'hit' AND outcome = 'ok'), 0) AS latency_sum,
              coalesce(sum(calls) FILTER (WHERE cache_status <> 'hit' AND outcome = 'ok'), 0) AS latency_n
         FROM ledger_daily WHERE tenant_id = $1 AND ($2::text IS NULL OR period = $2)`,
      [period ?? null],
    );
    const outcomes = await tenantQuery<{ outcome: string; n: string }>(
      this.ds.manager,
      tenantId,
      `SELECT outcome, sum(calls) AS n FROM ledger_daily WHERE tenant_id = $1 AND ($2::text IS NULL OR period = $2) GROUP BY outcome ORDER BY outcome`,
      [period ?? null],
    );
    const total = Number(r.total_calls);
    const hits = Number(r.cache_hits);
    return {
      period: period ?? null,
      totalCalls: total,
      cacheHits: hits,
      providerCalls: Number(r.provider_calls),
      failedCalls: Number(r.failed_calls),
      cacheHitRate: total ? Number((hits / total).toFixed(4)) : 0,
      totalTokens: Number(r.total_tokens),
      ...totalsOf(r),
      compressionSavedTokens: Number(r.compression_saved_tokens),
      averageLatencyMs: Number(r.latency_n) > 0 ? Math.round(Number(r.latency_sum) / Number(r.latency_n)) : 0,
      outcomes: Object.fromEntries(outcomes.map((o) => [o.outcome, Number(o.n)])),
    };
  }
}
