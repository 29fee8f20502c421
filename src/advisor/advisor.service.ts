import { LLM_MODELS, LlmModels } from '../llm/llm-models';
import { Inject, Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import type { TenantAuth } from '../common/auth';
import { ApiError } from '../common/errors';
import { tenantQuery } from '../db/tenant-scope';
import { CatalogModel, isRetired, takesCall, TIERS } from '../llm/catalog';
import { Clock } from '../common/clock';
import { localParts } from '../common/time-zone';
import { BudgetService } from '../billing/budget.service';
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
  /** models not retired that cannot take a call of the assumed size (its input over their limit, or input and output over their context), left out of `models` */
  cannotTake: string[];
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
    private readonly budget: BudgetService,
  ) {}

  /**
   * The tenant's own averages over its last MEASURED_DAYS days (in its time zone: the roll-up's days
   * are), from the ledger's daily roll-up: every call of grading work, as the month report counts
   * grading's model cost (gradings, deep reviews, escalations, shadow gradings), that reached a
   * model, and cache hits. The deep share is of the calls that reached a model (cache hits cost
   * nothing whichever tier they would have taken), so that the estimate for the same calls comes to
   * what the ledger charged. Read from the roll-up, not the ledger's rows: over a year of a large
   * school's calls a scan of its rows took half a second a request, and a burst of them held the
   * instance's database connections.
   */
  private async measured(tenantId: string) {
    const { timezone } = await this.budget.settings(tenantId);
    const today = localParts(this.clock.now(), timezone);
    const since = new Date(Date.UTC(today.year, today.month - 1, today.day - MEASURED_DAYS)).toISOString().slice(0, 10);
    const [r] = await tenantQuery<Record<string, string | null>>(
      this.ds.manager,
      tenantId,
      `SELECT sum(calls) FILTER (WHERE cache_status <> 'hit') AS paid,
              sum(calls) FILTER (WHERE cache_status = 'hit') AS hits,
              sum(calls) FILTER (WHERE cache_status <> 'hit' AND (purpose = 'deep_review' OR tier = 'deep')) AS deep,
              sum(input_tokens) FILTER (WHERE cache_status <> 'hit') AS input_total,
              sum(output_tokens) FILTER (WHERE cache_status <> 'hit') AS output_total,
              sum(cached_input_tokens) FILTER (WHERE cache_status <> 'hit') AS cached
         FROM ledger_daily WHERE tenant_id = $1 AND day >= $2::date AND outcome = 'ok' AND purpose IN ('grading', 'deep_review', 'escalation', 'shadow')`,
      [since],
    );
    const paid = Number(r.paid ?? 0);
    if (paid === 0) throw new ApiError('CONFLICT', `Nothing measured yet: this tenant's ledger of the last ${MEASURED_DAYS} days holds no grading call that reached a model`);
    const hits = Number(r.hits ?? 0);
    return {
      tokensPerCall: { input: Math.round(Number(r.input_total) / paid), output: Math.round(Number(r.output_total) / paid) },
      cacheHitRate: hits / (paid + hits),
      deepShare: Number(r.deep ?? 0) / paid,
      cachedInputShare: Number(r.input_total) > 0 ? Number(r.cached) / Number(r.input_total) : 0,
      basedOnCalls: paid + hits,
    };
  }

  async costEstimate(auth: TenantAuth, req: CostEstimateRequest): Promise<CostEstimateView> {
    const llm = this.models;
    if (req.measured) {
      // The ledger's figures replace these: given too, one of them would be silently set aside.
      const given = (['tokensPerCall', 'cacheHitRate', 'deepShare'] as const).filter((k) => req[k] !== undefined && req[k] !== null);
      if (given.length) throw ApiError.validation(given.map((field) => ({ field, message: `measured: true takes ${field} from the tenant's ledger; leave it out, or leave measured out` })));
    }
    const m = req.measured ? await this.measured(auth.tenantId) : null;
    const a: CostAssumptions = {
      dailyCalls: req.dailyCalls,
      inputTokens: m?.tokensPerCall.input ?? req.tokensPerCall?.input ?? DEFAULT_TOKENS.input,
      outputTokens: m?.tokensPerCall.output ?? req.tokensPerCall?.output ?? DEFAULT_TOKENS.output,
      cacheHitRate: m?.cacheHitRate ?? req.cacheHitRate ?? 0,
      deepShare: m?.deepShare ?? req.deepShare ?? 0.1,
      cachedInputShare: m?.cachedInputShare ?? 0,
    };
    // The tier's first model the gateway would call for a call of this size: not retired, and taking
    // its input and output (as the router passes over a model a call does not fit, e.g. one whose
    // prices hold only up to some input). Where the deployment configures no model for the tier (no
    // provider key yet), the catalog's default tier; where it does and none of them is left, 409: the
    // deployment would not serve the tier, and an estimate on another model would hide it.
    const now = this.clock.now();
    // (By the router's rule on the sizes assumed: it counts a call's whole output allowance, an
    // estimate has the average output.)
    const fits = (model: CatalogModel) => takesCall(model, a.inputTokens, a.outputTokens);
    const usable = (m: CatalogModel | undefined): m is CatalogModel => !!m && !isRetired(m, now) && fits(m);
    const first = (tier: 'standard' | 'deep'): CatalogModel => {
      const configured = llm.tiers[tier].flat().map((e) => e.model);
      const candidates = configured.length ? configured : llm.catalog.defaultTiers[tier].map((k) => llm.catalog.models.get(k));
      const found = candidates.find(usable);
      if (!found) {
        throw new ApiError(
          'CONFLICT',
          `No ${tier} model of this deployment ${configured.length ? '' : "(the catalog's default tier: no provider is configured for it) "}can take a call of ${a.inputTokens} input and ${a.outputTokens} output tokens, or all are retired`,
          { tier, tokensPerCall: { input: a.inputTokens, output: a.outputTokens } },
        );
      }
      return found;
    };
    const standard = first('standard');
    const premium = first('deep');
    // Every model a school could still be served by (a retired one is refused at the gateway) that
    // takes a call of this size, with the tiers it serves in this deployment, as GET /v1/models shows
    // them; the others by name, as models that cannot take it.
    const live = [...llm.catalog.models.values()].filter((model) => !isRetired(model, now));
    const models = live.filter(fits).map((model) => ({ model, tiers: TIERS.filter((t) => llm.tiers[t].some((g) => g.some((e) => e.model.key === model.key))) }));
    const cannotTake = live.filter((model) => !fits(model)).map((model) => model.key);
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
      cannotTake,
    };
  }
}

function round4(n: number): number {
  return Math.round(n * 10_000) / 10_000;
}
