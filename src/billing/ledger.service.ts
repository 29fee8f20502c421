import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { formatCny, Nanos } from '../common/money';
import { tenantQuery } from '../db/tenant-scope';

/** What a model call was for: chat, a grading, a paid deep review, a re-grading on escalation, a shadow grading. */
export type CallPurpose = 'chat' | 'grading' | 'deep_review' | 'escalation' | 'shadow';
/** replay: an answer paid for by an earlier run of the same job, used again at no cost */
export type CacheStatus = 'hit' | 'miss' | 'bypass' | 'replay';

/** One row of the call ledger: one attempt at a model call, or one answer served from cache. */
export interface LedgerEntry {
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
}

export const USAGE_GROUPS = ['day', 'model', 'provider', 'tier', 'teacher'] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];

const GROUP_SQL: Record<UsageGroup, string> = {
  day: `to_char(created_at AT TIME ZONE $4, 'YYYY-MM-DD')`,
  model: `coalesce(provider || ':' || model, 'none')`,
  provider: `coalesce(provider, 'none')`,
  tier: `coalesce(tier, 'none')`,
  teacher: `coalesce(api_key_id::text, 'none')`,
};

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
  providerCalls: number;
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

/** The call ledger, read: usage by group and totals. Its rows are written by BooksRepository only. */
@Injectable()
export class LedgerService {
  constructor(private readonly ds: DataSource) {}

  async usage(tenantId: string, from: Date, to: Date, groupBy: UsageGroup, timeZone: string): Promise<UsageRow[]> {
    const rows = await tenantQuery<Record<string, string>>(
      this.ds.manager,
      tenantId,
      `SELECT ${GROUP_SQL[groupBy]} AS key,
              count(*) AS calls,
              count(*) FILTER (WHERE cache_status = 'hit') AS cache_hits,
              count(*) FILTER (WHERE outcome <> 'ok') AS failures,
              count(DISTINCT call_group) FILTER (WHERE purpose IN ('grading', 'deep_review') AND outcome = 'ok') AS gradings,
              coalesce(sum(cost_nanos) FILTER (WHERE purpose IN ('grading', 'deep_review', 'escalation', 'shadow')), 0) AS grading_cost,
              ${TOTALS_SQL}
         FROM llm_calls
        WHERE tenant_id = $1 AND created_at >= $2 AND created_at < $3 AND $4::text IS NOT NULL -- $4 (the time zone) is typed even when the grouping does not use it
        GROUP BY 1 ORDER BY 1`,
      [from, to, timeZone],
    );
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

  async stats(tenantId: string, period?: string): Promise<LedgerStats> {
    const [r] = await tenantQuery<Record<string, string>>(
      this.ds.manager,
      tenantId,
      `SELECT count(*) AS total_calls,
              count(*) FILTER (WHERE cache_status = 'hit') AS cache_hits,
              count(*) FILTER (WHERE cache_status <> 'hit') AS provider_calls,
              count(*) FILTER (WHERE outcome <> 'ok') AS failed_calls,
              coalesce(sum(input_tokens + output_tokens), 0) AS total_tokens,
              ${TOTALS_SQL},
              coalesce(sum(compression_saved_tokens), 0) AS compression_saved_tokens,
              coalesce(avg(latency_ms) FILTER (WHERE cache_status <> 'hit' AND outcome = 'ok'), 0) AS avg_latency
         FROM llm_calls WHERE tenant_id = $1 AND ($2::text IS NULL OR period = $2)`,
      [period ?? null],
    );
    const outcomes = await tenantQuery<{ outcome: string; n: string }>(
      this.ds.manager,
      tenantId,
      `SELECT outcome, count(*) AS n FROM llm_calls WHERE tenant_id = $1 AND ($2::text IS NULL OR period = $2) GROUP BY outcome ORDER BY outcome`,
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
      averageLatencyMs: Math.round(Number(r.avg_latency)),
      outcomes: Object.fromEntries(outcomes.map((o) => [o.outcome, Number(o.n)])),
    };
  }
}
