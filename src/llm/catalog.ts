import * as fs from 'node:fs';
import { MoneyFormatError, Nanos, pricePerMillionToNanosPerToken } from '../common/money';
import builtIn from './builtin-catalog.json';

/**
 * The model catalog: which models exist, who serves them, what they cost, how long a context they
 * take, and which tier tries them in what order. It is data (catalog.json, or LLM_CATALOG_FILE),
 * never code: model ids and prices change often.
 */
export const DIALECTS = ['deepseek', 'zhipu', 'dashscope', 'openai'] as const;
export type Dialect = (typeof DIALECTS)[number];
export const TIERS = ['standard', 'deep'] as const;
export type Tier = (typeof TIERS)[number];

export interface Pricing {
  /** nano-yuan per token */
  input: Nanos;
  cachedInput: Nanos;
  output: Nanos;
  /** as written in the catalog: CNY per million tokens */
  text: { input: string; cachedInput: string; output: string };
}

/** Coefficients of the upper-bound token estimate for one tokenizer family (see tokens.ts). */
export interface TokenizerProfile {
  name: string;
  cjkPerChar: number;
  otherPerChar: number;
  perMessage: number;
  perRequest: number;
}

export interface CatalogProvider {
  name: string;
  dialect: Dialect;
  baseUrl: string;
  /** offers the OpenAI-compatible Batch API (files + batches) */
  batch: boolean;
}

export interface CatalogModel {
  /** "provider:model", unique across the catalog */
  key: string;
  id: string;
  provider: string;
  dialect: Dialect;
  tokenizer: TokenizerProfile;
  pricing: Pricing;
  /** prices through the provider's Batch API; set only when the provider offers batches */
  batchPricing?: Pricing;
  contextWindow: number;
  maxOutputTokens: number;
  jsonMode: boolean;
}

export interface TierEntry {
  model: CatalogModel;
  weight: number;
}

/** A tier is an ordered list of priority groups; within a group, candidates share load by weight. */
export type TierPlan = TierEntry[][];

export class CatalogError extends Error {}

interface RawCatalog {
  providers: Record<string, { dialect: string; baseUrl: string; batch?: boolean }>;
  tokenizers: Record<string, { cjkPerChar: number; otherPerChar: number; perMessage: number; perRequest: number }>;
  models: Array<{
    id: string;
    provider: string;
    tokenizer: string;
    pricing: { input: string; cachedInput: string; output: string };
    batchPricing?: { input: string; cachedInput: string; output: string };
    contextWindow: number;
    maxOutputTokens: number;
    jsonMode: boolean;
  }>;
  tiers: Record<string, string[]>;
}

export class Catalog {
  constructor(
    readonly providers: Map<string, CatalogProvider>,
    readonly models: Map<string, CatalogModel>,
    readonly defaultTiers: Record<Tier, string[]>,
  ) {}

  /** A model by "provider:id" or by bare id when only one provider serves it. */
  find(ref: string): CatalogModel | undefined {
    const exact = this.models.get(ref);
    if (exact) return exact;
    const byId = [...this.models.values()].filter((m) => m.id === ref);
    return byId.length === 1 ? byId[0] : undefined;
  }

  static load(file?: string): Catalog {
    if (!file) return Catalog.parse(builtIn as unknown, 'built-in catalog');
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new CatalogError(`cannot be read as JSON (${(err as Error).message.split('\n')[0]})`);
    }
    return Catalog.parse(raw, file);
  }

  static parse(input: unknown, source: string): Catalog {
    const fail = (msg: string): never => {
      throw new CatalogError(`${source}: ${msg}`);
    };
    const raw = input as RawCatalog;
    if (!raw || typeof raw !== 'object') fail('is not a JSON object');
    if (!raw.providers || typeof raw.providers !== 'object') fail('needs "providers"');
    if (!raw.tokenizers || typeof raw.tokenizers !== 'object') fail('needs "tokenizers"');
    if (!Array.isArray(raw.models) || raw.models.length === 0) fail('needs a non-empty "models" list');

    const providers = new Map<string, CatalogProvider>();
    for (const [name, p] of Object.entries(raw.providers)) {
      if (!/^[a-z][a-z0-9_]*$/.test(name)) fail(`provider name "${name}" must be lower-case letters, digits, _`);
      if (!(DIALECTS as readonly string[]).includes(p?.dialect)) fail(`provider "${name}" has unknown dialect "${p?.dialect}"`);
      if (typeof p.baseUrl !== 'string' || !/^https?:\/\//.test(p.baseUrl)) fail(`provider "${name}" needs an http(s) baseUrl`);
      if (p.batch !== undefined && typeof p.batch !== 'boolean') fail(`provider "${name}" has "batch" that is not true or false`);
      providers.set(name, { name, dialect: p.dialect as Dialect, baseUrl: p.baseUrl.replace(/\/+$/, ''), batch: p.batch === true });
    }

    const tokenizers = new Map<string, TokenizerProfile>();
    for (const [name, t] of Object.entries(raw.tokenizers)) {
      for (const k of ['cjkPerChar', 'otherPerChar', 'perMessage', 'perRequest'] as const) {
        if (typeof t?.[k] !== 'number' || !(t[k] >= 0)) fail(`tokenizer "${name}" needs a non-negative number "${k}"`);
      }
      tokenizers.set(name, { name, ...t });
    }

    const models = new Map<string, CatalogModel>();
    for (const m of raw.models) {
      const where = `model "${m?.provider}:${m?.id}"`;
      if (typeof m?.id !== 'string' || !m.id) fail('every model needs an "id"');
      const provider = providers.get(m.provider);
      if (!provider) fail(`${where} names unknown provider "${m.provider}"`);
      const tokenizer = tokenizers.get(m.tokenizer);
      if (!tokenizer) fail(`${where} names unknown tokenizer "${m.tokenizer}"`);
      const price = (field: 'input' | 'cachedInput' | 'output', table: 'pricing' | 'batchPricing' = 'pricing'): Nanos => {
        const v = m[table]?.[field];
        if (typeof v !== 'string') return fail(`${where} needs ${table}.${field} as a decimal string (CNY per million tokens)`);
        try {
          return pricePerMillionToNanosPerToken(v);
        } catch (err) {
          if (err instanceof MoneyFormatError) fail(`${where}: ${err.message}`);
          throw err;
        }
      };
      const pricing: Pricing = {
        input: price('input'),
        cachedInput: price('cachedInput'),
        output: price('output'),
        text: { ...m.pricing },
      };
      if (pricing.cachedInput > pricing.input) fail(`${where}: cached input cannot cost more than input`);
      let batchPricing: Pricing | undefined;
      if (m.batchPricing !== undefined && provider!.batch) {
        batchPricing = {
          input: price('input', 'batchPricing'),
          cachedInput: price('cachedInput', 'batchPricing'),
          output: price('output', 'batchPricing'),
          text: { ...m.batchPricing },
        };
        if (batchPricing.input > pricing.input || batchPricing.output > pricing.output || batchPricing.cachedInput > pricing.cachedInput) {
          fail(`${where}: batchPricing cannot be above pricing`);
        }
      }
      for (const k of ['contextWindow', 'maxOutputTokens'] as const) {
        if (!Number.isSafeInteger(m[k]) || m[k] <= 0) fail(`${where} needs a positive integer "${k}"`);
      }
      if (typeof m.jsonMode !== 'boolean') fail(`${where} needs "jsonMode": true or false`);
      const key = `${m.provider}:${m.id}`;
      if (models.has(key)) fail(`${where} is listed twice`);
      models.set(key, {
        key,
        id: m.id,
        provider: provider!.name,
        dialect: provider!.dialect,
        tokenizer: tokenizer!,
        pricing,
        batchPricing,
        contextWindow: m.contextWindow,
        maxOutputTokens: m.maxOutputTokens,
        jsonMode: m.jsonMode,
      });
    }

    const defaultTiers = { standard: [], deep: [] } as Record<Tier, string[]>;
    for (const tier of TIERS) {
      const list = raw.tiers?.[tier] ?? [];
      if (!Array.isArray(list)) fail(`tiers.${tier} must be a list of "provider:model"`);
      defaultTiers[tier] = list;
    }
    const catalog = new Catalog(providers, models, defaultTiers);
    for (const tier of TIERS) {
      try {
        parseTierSpec(catalog.defaultTiers[tier].join(','), catalog);
      } catch (err) {
        fail(`tiers.${tier}: ${(err as Error).message}`);
      }
    }
    return catalog;
  }
}

/**
 * Parses a tier list: priority groups separated by ",", alternatives within a group by "|", each
 * "provider:model" with an optional "*weight". Example:
 * `dashscope:qwen-turbo*3|zhipu:glm-4-air,deepseek:deepseek-chat` — qwen-turbo and glm-4-air share
 * the first place 3:1; deepseek-chat is the fallback.
 */
export function parseTierSpec(spec: string, catalog: Catalog): TierPlan {
  const plan: TierPlan = [];
  for (const groupText of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const group: TierEntry[] = [];
    for (const entry of groupText.split('|').map((s) => s.trim()).filter(Boolean)) {
      const m = /^([a-z][a-z0-9_]*:[A-Za-z0-9._:\-/]+?)(?:\*(\d{1,3}))?$/.exec(entry);
      if (!m) throw new CatalogError(`"${entry}" is not provider:model or provider:model*weight`);
      const model = catalog.models.get(m[1]);
      if (!model) throw new CatalogError(`"${m[1]}" is not in the catalog`);
      const weight = m[2] === undefined ? 1 : Number(m[2]);
      if (weight <= 0) throw new CatalogError(`"${entry}" needs a weight of at least 1`);
      group.push({ model, weight });
    }
    if (group.length) plan.push(group);
  }
  return plan;
}
