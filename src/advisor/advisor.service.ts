import { LLM_MODELS, LlmModels } from '../llm/llm-models';
import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { TenantAuth } from '../common/auth';
import { ApiError } from '../common/errors';
import { tenantQuery } from '../db/tenant-scope';
import { CatalogModel, isRetired, TIERS } from '../llm/catalog';
import { Clock } from '../common/clock';
import { CostAssumptions, CostEstimates, estimateCosts } from './cost-estimate';

export interface CostEstimateRequest {
  dailyCalls: number;
  tokensPerCall?: { input: number; output: number };
  cacheHitRate?: number;
  deepShare?: number;
  measured?: boolean;
}

/** POST /v1/advisor/cost-estimate: the assumptions used (measured from the ledger, given, or defaults) and the estimates. */
export interface CostEstimateView extends CostEstimates {
  assumptions: {
    dailyCalls: number;
    tokensPerCall: { input: number; output: number };
    cacheHitRate: number;
    deepShare: number;
    cachedInputShare: number;
    measured: boolean;
    /** the ledger's calls the measured figures come from */
    basedOnCalls?: number;
    daysPerMonth: number;
    pricing: string;
  };
}

/** How far back `measured: true` reads the tenant's ledger. */
const MEASURED_DAYS = 90;

/** Defaults for a grading call when nothing is measured: a ~900-character essay and its grade. */
const DEFAULT_TOKENS = { input: 1_800, output: 700 };

@Injectable()
export class AdvisorService {
  constructor(
    private readonly ds: DataSource,
    @Inject(LLM_MODELS) private readonly models: LlmModels,
    private readonly clock: Clock,
  ) {}

  /**
   * The tenant's own averages over the last MEASURED_DAYS, from the ledger's daily roll-up (grading
   * calls that reached a model, and cache hits). Read from the roll-up, not the ledger's rows: over a
   * year of a large school's calls a scan of its rows took half a second a request, and a burst of
   * them held the instance's database connections.
   */
  private async measured(tenantId: string) {
    const since = new Date(this.clock.now().getTime() - MEASURED_DAYS * 86_400_000).toISOString().slice(0, 10);
    const [r] = await tenantQuery<Record<string, string | null>>(
      this.ds.manager,
      tenantId,
      `SELECT sum(calls) FILTER (WHERE cache_status <> 'hit') AS paid,
              sum(calls) FILTER (WHERE cache_status = 'hit') AS hits,
              sum(calls) FILTER (WHERE purpose = 'deep_review' OR tier = 'deep') AS deep,
              sum(input_tokens) FILTER (WHERE cache_status <> 'hit') AS input_total,
              sum(output_tokens) FILTER (WHERE cache_status <> 'hit') AS output_total,
              sum(cached_input_tokens) FILTER (WHERE cache_status <> 'hit') AS cached
         FROM ledger_daily WHERE tenant_id = $1 AND day >= $2::date AND outcome = 'ok' AND purpose IN ('grading', 'deep_review')`,
      [since],
    );
    const paid = Number(r.paid ?? 0);
    if (paid === 0) throw new ApiError('CONFLICT', `Nothing measured yet: this tenant has no graded essays in its ledger of the last ${MEASURED_DAYS} days`);
    const hits = Number(r.hits ?? 0);
    return {
      tokensPerCall: { input: Math.round(Number(r.input_total) / paid), output: Math.round(Number(r.output_total) / paid) },
      cacheHitRate: hits / (paid + hits),
      deepShare: Number(r.deep) / (paid + hits),
      cachedInputShare: Number(r.input_total) > 0 ? Number(r.cached) / Number(r.input_total) : 0,
      basedOnCalls: paid + hits,
    };
  }

  async costEstimate(auth: TenantAuth, req: CostEstimateRequest): Promise<CostEstimateView> {
    const llm = this.models;
    const m = req.measured ? await this.measured(auth.tenantId) : null;
    const a: CostAssumptions = {
      dailyCalls: req.dailyCalls,
      inputTokens: m?.tokensPerCall.input ?? req.tokensPerCall?.input ?? DEFAULT_TOKENS.input,
      outputTokens: m?.tokensPerCall.output ?? req.tokensPerCall?.output ?? DEFAULT_TOKENS.output,
      cacheHitRate: m?.cacheHitRate ?? req.cacheHitRate ?? 0,
      deepShare: m?.deepShare ?? req.deepShare ?? 0.1,
      cachedInputShare: m?.cachedInputShare ?? 0,
    };
    // The tier's first model the gateway would still call (a retired one is passed over, as the
    // router does), or the catalog's first for the tier where none is configured.
    const now = this.clock.now();
    const live = (m: CatalogModel | undefined) => (m && !isRetired(m, now) ? m : undefined);
    const first = (tier: 'standard' | 'deep'): CatalogModel | undefined =>
      llm.tiers[tier].flat().map((e) => live(e.model)).find(Boolean) ?? llm.catalog.defaultTiers[tier].map((k) => live(llm.catalog.models.get(k))).find(Boolean);
    const standard = first('standard');
    const premium = first('deep');
    if (!standard || !premium) throw new ApiError('CONFLICT', 'The catalog names no standard or deep model to estimate with');
    // Every model a school could still be served by (a retired one is refused at the gateway), with
    // the tiers it serves in this deployment, as GET /v1/models shows them.
    const models = [...llm.catalog.models.values()]
      .filter((model) => !isRetired(model, now))
      .map((model) => ({ model, tiers: TIERS.filter((t) => llm.tiers[t].some((g) => g.some((e) => e.model.key === model.key))) }));
    return {
      assumptions: {
        dailyCalls: a.dailyCalls,
        tokensPerCall: { input: a.inputTokens, output: a.outputTokens },
        cacheHitRate: round4(a.cacheHitRate),
        deepShare: round4(a.deepShare),
        cachedInputShare: round4(a.cachedInputShare),
        measured: !!m,
        ...(m ? { basedOnCalls: m.basedOnCalls } : {}),
        daysPerMonth: 30,
        pricing: 'CNY, catalog prices per million tokens',
      },
      ...estimateCosts(models, standard, premium, a),
    };
  }
}

function round4(n: number): number {
  return Math.round(n * 10_000) / 10_000;
}
