import { Inject, Injectable } from '@nestjs/common';
import { Clock } from '../common/clock';
import { ApiError } from '../common/errors';
import { CatalogModel, isRetired, PriceText, Pricing, retiredMessage, Tier, TIERS } from './catalog';
import { LLM_MODELS, LlmModels } from './llm-models';
import { TIER_ALIASES } from './chat-request';
import type { GatewayTarget } from './gateway-types';

/** Prices as the catalog states them, each a decimal string of CNY per million tokens. */
export interface ModelPrices {
  pricing: PriceText | null;
  pricingUnit: string;
  /** time-of-day prices (DeepSeek's weekday peak), when the model has them */
  windows?: Array<{ name: string; timezone: string; days: string[]; hours: string[]; exceptHolidays: string | null; pricing: PriceText }>;
  /** the provider's Batch API price, null when it has none */
  batchPricing: PriceText | null;
}

/** A catalog model's extension: where it is served, its tiers here, its prices and limits, and where the prices come from. */
export interface ModelInfo extends ModelPrices {
  key: string;
  provider: string;
  tiers: Tier[];
  contextWindow: number;
  maxInputTokens: number;
  maxOutputTokens: number;
  jsonMode: boolean;
  cacheRules: string;
  source: string;
  checkedOn: string;
  retiresOn?: string;
  replacement?: string | null;
}

/** A tier alias's extension: its candidates, and what a call costs when the first answers it (null fields when the tier has none). */
export interface AliasInfo extends ModelPrices {
  alias: true;
  provider: string | null;
  tiers: Tier[];
  /** each priority group, `|` between alternatives, `*N` a weight */
  candidates: string[];
  first: string | null;
  contextWindow: number | null;
}

/** One entry of GET /v1/models, OpenAI's model shape with Inkstone's extension. */
export interface ModelEntry {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  inkstone: ModelInfo | AliasInfo;
}

export interface ModelsView {
  object: 'list';
  data: ModelEntry[];
}

/** GET /v1/models: OpenAI's list shape, plus each model's provider, tiers, prices and context. */
@Injectable()
export class ModelsService {
  constructor(
    @Inject(LLM_MODELS) private readonly llm: LlmModels,
    private readonly clock: Clock,
  ) {}

  /**
   * Is a chat call to this target kept to an admin with directDeep on, as the premium tier is? The
   * deep tier's alias, or a catalog model that is none of the standard tier's candidates: a deep-tier
   * model, and also one the operator put in no tier (the catalog lists premium models that are in no
   * tier by default; before, those passed as not premium and any teacher could call them). An id
   * not in the catalog, or a retired model, is refused by the gateway (404, naming the replacement).
   */
  isPremium(target: GatewayTarget): boolean {
    if ('tier' in target) return target.tier === 'deep';
    const model = this.llm.catalog.find(target.model);
    if (!model || isRetired(model, this.clock.now())) return false;
    return !this.llm.tiers.standard.some((g) => g.some((e) => e.model.key === model.key));
  }

  /**
   * GET /v1/models/:id: one entry of the list, by its listed id or its catalog key (`provider:id`);
   * a retired model is 404 naming its replacement, as a call to it is.
   */
  retrieve(id: string): ModelEntry {
    const listed = this.list().data.find((m) => m.id === id || `${m.owned_by}:${m.id}` === id);
    if (listed) return listed;
    const model = this.llm.catalog.find(id);
    if (model && isRetired(model, this.clock.now())) throw new ApiError('NOT_FOUND', retiredMessage(model));
    throw new ApiError('NOT_FOUND', `model "${id}" is not in the catalog (GET /v1/models lists the models and tier aliases)`);
  }

  list(): ModelsView {
    const llm = this.llm;
    const now = this.clock.now();
    const tiersOf = (m: CatalogModel): Tier[] => TIERS.filter((t) => llm.tiers[t].some((g) => g.some((e) => e.model.key === m.key)));
    const idCount = new Map<string, number>();
    for (const m of llm.catalog.models.values()) idCount.set(m.id, (idCount.get(m.id) ?? 0) + 1);
    const aliases = Object.entries(TIER_ALIASES).map(([alias, tier]) => {
      // What a call is served by, and costs, when the first candidate answers it; every field of a
      // model's entry is there, null when the tier has no candidate (no provider configured).
      const first = llm.tiers[tier][0]?.[0]?.model;
      return {
        id: alias,
        object: 'model' as const,
        created: 0,
        owned_by: 'inkstone',
        inkstone: {
          alias: true as const,
          provider: first?.provider ?? null,
          tiers: [tier],
          candidates: llm.tiers[tier].map((g) => g.map((e) => (e.weight === 1 ? e.model.key : `${e.model.key}*${e.weight}`)).join('|')),
          first: first?.key ?? null,
          ...(first ? priceView(first) : { pricing: null, pricingUnit: 'CNY per million tokens', batchPricing: null }),
          contextWindow: first?.contextWindow ?? null,
        },
      };
    });
    const models = [...llm.catalog.models.values()]
      .filter((m) => llm.providers.has(m.provider) && !isRetired(m, now))
      .map((m) => ({
        id: idCount.get(m.id) === 1 ? m.id : m.key,
        object: 'model' as const,
        created: 0,
        owned_by: m.provider,
        inkstone: {
          key: m.key,
          provider: m.provider,
          tiers: tiersOf(m),
          ...priceView(m),
          contextWindow: m.contextWindow,
          maxInputTokens: m.maxInputTokens,
          maxOutputTokens: m.maxOutputTokens,
          jsonMode: m.jsonMode,
          cacheRules: m.cacheRules,
          source: m.source,
          checkedOn: m.checkedOn,
          ...(m.retiresOn ? { retiresOn: m.retiresOnText, replacement: m.replacement ?? null } : {}),
        },
      }));
    return { object: 'list', data: [...aliases, ...models] };
  }
}

const text = (p: Pricing) => ({ ...p.text });

/** A model's prices as the catalog states them: base, time-of-day windows, batch. */
function priceView(m: CatalogModel): ModelPrices {
  return {
    pricing: text(m.pricing),
    pricingUnit: 'CNY per million tokens',
    ...(m.windows.length
      ? {
          windows: m.windows.map((w) => ({
            name: w.name,
            timezone: w.schedule.timezone,
            days: w.schedule.text.days,
            hours: w.schedule.text.hours,
            exceptHolidays: w.schedule.text.except ?? null,
            pricing: text(w.pricing),
          })),
        }
      : {}),
    batchPricing: m.batchPricing ? text(m.batchPricing) : null,
  };
}
