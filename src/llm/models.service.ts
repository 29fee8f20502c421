import { Inject, Injectable } from '@nestjs/common';
import { AppConfig, CONFIG } from '../config/app-config';
import { CatalogModel, Tier, TIERS } from './catalog';
import { TIER_ALIASES } from './chat-request';

export interface ModelsView {
  object: 'list';
  data: Array<{
    id: string;
    object: 'model';
    created: number;
    owned_by: string;
    inkstone: Record<string, unknown>;
  }>;
}

/** GET /v1/models: OpenAI's list shape, plus each model's provider, tiers, prices and context. */
@Injectable()
export class ModelsService {
  constructor(@Inject(CONFIG) private readonly config: AppConfig) {}

  list(): ModelsView {
    const llm = this.config.llm;
    const tiersOf = (m: CatalogModel): Tier[] => TIERS.filter((t) => llm.tiers[t].some((g) => g.some((e) => e.model.key === m.key)));
    const idCount = new Map<string, number>();
    for (const m of llm.catalog.models.values()) idCount.set(m.id, (idCount.get(m.id) ?? 0) + 1);
    const aliases = Object.entries(TIER_ALIASES).map(([alias, tier]) => ({
      id: alias,
      object: 'model' as const,
      created: 0,
      owned_by: 'inkstone',
      inkstone: {
        alias: true,
        tiers: [tier],
        candidates: llm.tiers[tier].map((g) => g.map((e) => (e.weight === 1 ? e.model.key : `${e.model.key}*${e.weight}`)).join('|')),
      },
    }));
    const models = [...llm.catalog.models.values()]
      .filter((m) => llm.providers.has(m.provider))
      .map((m) => ({
        id: idCount.get(m.id) === 1 ? m.id : m.key,
        object: 'model' as const,
        created: 0,
        owned_by: m.provider,
        inkstone: {
          key: m.key,
          provider: m.provider,
          tiers: tiersOf(m),
          pricing: { input: m.pricing.text.input, cachedInput: m.pricing.text.cachedInput, output: m.pricing.text.output },
          pricingUnit: 'CNY per million tokens',
          contextWindow: m.contextWindow,
          maxOutputTokens: m.maxOutputTokens,
          jsonMode: m.jsonMode,
        },
      }));
    return { object: 'list', data: [...aliases, ...models] };
  }
}
