import { ConfigError, EnvReader } from '../config/env-reader';
import type { LlmConfig } from '../config/app-config';
import { Catalog, CatalogError, isRetired, parseTierSpec, retiredMessage, Tier, TierPlan, TIERS } from './catalog';

/** A provider that has an API key configured, with the base URL to call. */
export interface EnabledProvider {
  name: string;
  apiKey: string;
  baseUrl: string;
}

/** The models the gateway may call: the catalog, the providers with a key, and each tier's candidates. */
export interface LlmModels {
  catalog: Catalog;
  /** Providers with a key, by name. A provider without a key is never called. */
  providers: Map<string, EnabledProvider>;
  /** Each tier's candidates, limited to enabled providers. */
  tiers: Record<Tier, TierPlan>;
}

export const LLM_MODELS = Symbol('LlmModels');

/**
 * Loads the catalog (LLM_CATALOG_FILE over the built-in one), the providers with a key
 * (<PROVIDER>_API_KEY, <PROVIDER>_BASE_URL) and the tiers (LLM_STANDARD_MODELS, LLM_DEEP_MODELS, or
 * the catalog's). Throws a ConfigError naming the variable: a bad catalog, a tier naming a model
 * the catalog lacks, a tier naming a retired model, or a tier named in the environment none of whose
 * models' providers has a key (while some provider has one) stops the start with one line.
 */
export function resolveLlmModels(llm: LlmConfig, now: Date = new Date()): LlmModels {
  const e = new EnvReader(llm.modelEnv);
  let catalog: Catalog;
  const catalogFile = e.optionalString('LLM_CATALOG_FILE');
  try {
    catalog = Catalog.load(catalogFile);
  } catch (err) {
    if (err instanceof CatalogError) throw new ConfigError('LLM_CATALOG_FILE', err.message);
    throw err;
  }
  const providers = new Map<string, EnabledProvider>();
  for (const p of catalog.providers.values()) {
    const prefix = p.name.toUpperCase();
    const apiKey = e.optionalSecret(`${prefix}_API_KEY`);
    const baseUrl = e.url(`${prefix}_BASE_URL`, ['http', 'https'], { default: p.baseUrl });
    if (apiKey) providers.set(p.name, { name: p.name, apiKey, baseUrl: baseUrl!.replace(/\/+$/, '') });
  }
  const tiers = {} as Record<Tier, TierPlan>;
  for (const tier of TIERS) {
    const variable = tier === 'standard' ? 'LLM_STANDARD_MODELS' : 'LLM_DEEP_MODELS';
    const fromEnv = e.optionalString(variable);
    const spec = fromEnv ?? catalog.defaultTiers[tier].join(',');
    let plan: TierPlan;
    try {
      plan = parseTierSpec(spec, catalog);
    } catch (err) {
      if (err instanceof CatalogError) throw new ConfigError(variable, `must list catalog models: ${err.message}`);
      throw err;
    }
    // A tier that names a retired model would fail on every call: refuse to start, naming the replacement.
    const retired = plan.flat().find((c) => isRetired(c.model, now));
    if (retired) {
      const where = fromEnv || !catalogFile ? variable : 'LLM_CATALOG_FILE';
      throw new ConfigError(where, `names a retired model: ${retiredMessage(retired.model)}${where === variable ? '' : ` (tiers.${tier})`}`);
    }
    tiers[tier] = plan.map((g) => g.filter((c) => providers.has(c.model.provider))).filter((g) => g.length > 0);
    // A tier the operator named whose models' providers all lack a key, while some provider has one
    // (a key forgotten, or a typo in the list): every call of the tier would go to the offline grader
    // or fail. Refuse to start, naming the keys. (With no key at all, the offline mode is meant; a
    // catalog's default tier without a key is said on /health and in the start-up log.)
    if (fromEnv && providers.size > 0 && tiers[tier].length === 0) {
      const keys = [...new Set(plan.flat().map((c) => `${c.model.provider.toUpperCase()}_API_KEY`))];
      if (keys.length === 0) throw new ConfigError(variable, `names no model: list provider:model entries, or leave it unset for the catalog's tier`);
      throw new ConfigError(variable, `names no model whose provider has an API key: set ${keys.join(' or ')}, or name models of ${[...providers.keys()].join(', ')}`);
    }
  }
  return { catalog, providers, tiers };
}
