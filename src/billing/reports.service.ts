import { LLM_MODELS, LlmModels } from '../llm/llm-models';
import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { formatCny, Nanos } from '../common/money';
import { tenantQuery } from '../db/tenant-scope';
import { BudgetService, ratio } from './budget.service';
import { periodBounds } from './periods';

interface LedgerGroup {
  purpose: string;
  batch: boolean;
  tier: string | null;
  provider: string | null;
  model: string | null;
  gradings: number;
  hits: number;
  calls: number;
  cost: Nanos;
  saved: Nanos;
  compressionTokens: number;
  uncachedIn: bigint;
  cachedIn: bigint;
  out: bigint;
  paidCost: Nanos;
}

/**
 * The month's business, from the call ledger and the orders only, so every figure adds up to
 * them to the last nano-yuan: gradings by tier, deep reviews sold, model cost, revenue, margin,
 * cost per grading, cache hit rate, and what the cache, compression and routing saved.
 */
@Injectable()
export class ReportsService {
  constructor(
    private readonly ds: DataSource,
    private readonly budget: BudgetService,
    @Inject(LLM_MODELS) private readonly models: LlmModels,
  ) {}

  async month(tenantId: string, period: string) {
    const { timezone } = await this.budget.settings(tenantId);
    const { start, end } = periodBounds(period, timezone);
    const rows = await tenantQuery<Record<string, string>>(
      this.ds.manager,
      tenantId,
      `SELECT purpose, tier, provider, model, batch,
              count(*) FILTER (WHERE outcome = 'ok') AS gradings,
              count(*) FILTER (WHERE cache_status = 'hit') AS hits,
              count(*) AS calls,
              coalesce(sum(cost_nanos), 0) AS cost,
              coalesce(sum(saved_nanos), 0) AS saved,
              coalesce(sum(compression_saved_tokens), 0) AS compression_tokens,
              coalesce(sum(input_tokens - cached_input_tokens) FILTER (WHERE outcome = 'ok' AND cache_status <> 'hit'), 0) AS uncached_in,
              coalesce(sum(cached_input_tokens) FILTER (WHERE outcome = 'ok' AND cache_status <> 'hit'), 0) AS cached_in,
              coalesce(sum(output_tokens) FILTER (WHERE outcome = 'ok' AND cache_status <> 'hit'), 0) AS out,
              coalesce(sum(cost_nanos) FILTER (WHERE outcome = 'ok' AND cache_status <> 'hit'), 0) AS paid_cost
         FROM llm_calls WHERE tenant_id = $1 AND period = $2
        GROUP BY purpose, tier, provider, model, batch`,
      [period],
    );
    const groups: LedgerGroup[] = rows.map((r) => ({
      purpose: r.purpose,
      batch: (r.batch as unknown) === true,
      tier: r.tier,
      provider: r.provider,
      model: r.model,
      gradings: Number(r.gradings),
      hits: Number(r.hits),
      calls: Number(r.calls),
      cost: BigInt(r.cost),
      saved: BigInt(r.saved),
      compressionTokens: Number(r.compression_tokens),
      uncachedIn: BigInt(r.uncached_in),
      cachedIn: BigInt(r.cached_in),
      out: BigInt(r.out),
      paidCost: BigInt(r.paid_cost),
    }));
    const [orders] = await tenantQuery<Record<string, string>>(
      this.ds.manager,
      tenantId,
      `SELECT count(*) FILTER (WHERE created_at >= $2 AND created_at < $3) AS ordered,
              count(*) FILTER (WHERE paid_at >= $2 AND paid_at < $3 AND status <> 'refunded') AS sold,
              count(*) FILTER (WHERE delivered_at >= $2 AND delivered_at < $3 AND status = 'delivered') AS delivered,
              count(*) FILTER (WHERE refunded_at >= $2 AND refunded_at < $3) AS refunded,
              coalesce(sum(price_nanos) FILTER (WHERE paid_at >= $2 AND paid_at < $3 AND status <> 'refunded'), 0) AS revenue
         FROM orders WHERE tenant_id = $1`,
      [start, end],
    );
    const [offline] = await tenantQuery<{ n: number }>(
      this.ds.manager,
      tenantId,
      `SELECT count(*)::int AS n FROM essays
        WHERE tenant_id = $1 AND graded_at >= $2 AND graded_at < $3 AND 'offline_estimate' = ANY(flags)`,
      [start, end],
    );

    const sum = (f: (g: LedgerGroup) => bigint, keep: (g: LedgerGroup) => boolean = () => true) => groups.filter(keep).reduce((a, g) => a + f(g), 0n);
    const count = (f: (g: LedgerGroup) => number, keep: (g: LedgerGroup) => boolean = () => true) => groups.filter(keep).reduce((a, g) => a + f(g), 0);
    const isGrading = (g: LedgerGroup) => g.purpose === 'grading' || g.purpose === 'deep_review';

    const modelCost = sum((g) => g.cost);
    const gradingCost = sum((g) => g.cost, isGrading);
    const deepCost = sum((g) => g.cost, (g) => g.purpose === 'deep_review');
    const standardGradings = count((g) => g.gradings, (g) => isGrading(g) && g.tier === 'standard');
    const deepGradings = count((g) => g.gradings, (g) => isGrading(g) && g.tier === 'deep');
    const modelGradings = standardGradings + deepGradings;
    const allGradings = modelGradings + offline.n;
    const hits = count((g) => g.hits, isGrading);
    const revenue = BigInt(orders.revenue);

    // Savings are claimed at each model's lowest real-time price (off-peak where it has windows):
    // never more than was really saved.
    // Compression: tokens saved at each model's (uncached) input price.
    const catalog = this.models.catalog;
    const savedByCompression = sum((g) => {
      const m = g.provider && g.model ? catalog.models.get(`${g.provider}:${g.model}`) : undefined;
      return m ? BigInt(g.compressionTokens) * m.floor.input : 0n;
    });
    // Routing: what the standard gradings would have cost on the deep tier's first model.
    const premium = this.models.tiers.deep[0]?.[0]?.model ?? catalog.models.get(catalog.defaultTiers.deep[0] ?? '');
    const savedByRouting = premium
      ? sum(
          (g) => g.uncachedIn * premium.floor.input + g.cachedIn * premium.floor.cachedInput + g.out * premium.floor.output - g.paidCost,
          (g) => isGrading(g) && g.tier === 'standard',
        )
      : 0n;

    // Batch: what the batched calls would have cost at the model's real-time prices.
    const savedByBatch = sum(
      (g) => {
        const m = g.provider && g.model ? catalog.models.get(`${g.provider}:${g.model}`) : undefined;
        if (!m) return 0n;
        return g.uncachedIn * m.floor.input + g.cachedIn * m.floor.cachedInput + g.out * m.floor.output - g.paidCost;
      },
      (g) => g.batch,
    );

    return {
      period,
      timezone,
      gradings: { total: allGradings, standard: standardGradings, deep: deepGradings, offline: offline.n, fromCache: hits },
      deepReviews: { ordered: Number(orders.ordered), sold: Number(orders.sold), delivered: Number(orders.delivered), refunded: Number(orders.refunded) },
      modelCost: formatCny(modelCost),
      modelCostByPurpose: Object.fromEntries(
        ['grading', 'deep_review', 'chat'].map((p) => [p, formatCny(sum((g) => g.cost, (g) => g.purpose === p))]),
      ),
      revenue: formatCny(revenue),
      margin: formatCny(revenue - modelCost),
      deepReviewMargin: formatCny(revenue - deepCost),
      costPerGrading: allGradings ? formatCny(gradingCost / BigInt(allGradings)) : '0.00',
      cacheHitRate: modelGradings ? ratio(BigInt(hits), BigInt(modelGradings)) : '0.0000',
      savedByCache: formatCny(sum((g) => g.saved)),
      savedByCompression: formatCny(savedByCompression),
      compressionTokensSaved: count((g) => g.compressionTokens),
      savedByRouting: formatCny(savedByRouting > 0n ? savedByRouting : 0n),
      routingBaseline: premium ? premium.key : null,
      savedByBatch: formatCny(savedByBatch > 0n ? savedByBatch : 0n),
      ledgerCalls: count((g) => g.calls),
    };
  }
}
